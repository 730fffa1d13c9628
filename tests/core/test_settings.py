"""Driver settings schemas: the documented tables match them, ``load_config()`` rejects
what ``configure()`` rejects with the same message, and ``infratrace check`` does too
without side effects."""

from __future__ import annotations

import dataclasses
import math
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

import infratrace
from infratrace import ConfigError, ConnectionConfig, _registry, load_config, register_driver
from infratrace._errors import toml_text
from infratrace._settings import (
    NoSettings,
    markdown_table,
    masked,
    number,
    parse_settings,
    schema_fields,
    settings_for,
    table,
    text,
)
from infratrace._units import DURATION_HELP, SIZE_HELP
from infratrace.cli import main as cli_main
from infratrace.drivers import otlp
from infratrace.drivers.default import ConsoleDriver
from infratrace.drivers.discard import DiscardDriver
from infratrace.drivers.file import FileDriver, FileSettings
from infratrace.drivers.greptime import GreptimeDriver, GreptimeSettings
from infratrace.drivers.otlp import OTLPSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DRIVERS_DOC = Path(__file__).resolve().parents[2] / "docs" / "drivers.md"


def load_error(toml: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(toml)
    return info.value


@pytest.fixture
def registered() -> Iterator[Any]:
    """register_driver(), undone after the test."""
    names: list[str] = []

    def register(name: str, factory: Any) -> None:
        register_driver(name, factory)
        names.append(name)

    yield register
    for name in names:
        _registry._registered.pop(name, None)


# -- the documented tables are the schemas ---------------------------------------------


def doc_section(section: str) -> str:
    doc = DRIVERS_DOC.read_text(encoding="utf-8")
    start = doc.index(f"\n## {section}\n")
    end = doc.find("\n## ", start + 1)
    return doc[start:end]


def documented_table(section: str) -> list[str]:
    """The lines of the settings table under ``## <section>`` in docs/drivers.md."""
    lines = doc_section(section).splitlines()
    start = lines.index("| `setting` key | default | meaning |")
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return lines[start:end]


def parse_key_cell(cell: str) -> tuple[str, tuple[str, ...]]:
    match = re.fullmatch(r"`([^`]+)`(?: \(alias(?:es)? (.+)\))?", cell)
    assert match, cell
    aliases = tuple(re.findall(r"`([^`]+)`", match.group(2) or ""))
    return match.group(1), aliases


def parse_default_cell(cell: str) -> Any:
    """The TOML literal at the start of a default cell, as TOML reads it."""
    match = re.match(r"`([^`]*)`", cell)
    assert match, cell
    return tomllib.loads(f"value = {match.group(1)}")["value"]


@pytest.mark.parametrize(
    ("section", "driver", "schema"),
    [("file", FileDriver, FileSettings), ("otlp", otlp.OTLPDriver, OTLPSettings), ("greptime", GreptimeDriver, GreptimeSettings)],
)
def test_documented_table_matches_the_schema(section: str, driver: Any, schema: type[Any]) -> None:
    assert driver.settings_schema is schema
    table_lines = documented_table(section)
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in table_lines[2:]]
    declared = schema_fields(schema)
    assert [parse_key_cell(row[0]) for row in rows] == [(name, spec.aliases) for name, spec in declared]
    defaults = {field.name: field for field in dataclasses.fields(schema)}
    for row, (name, spec) in zip(rows, declared, strict=True):
        documented = parse_default_cell(row[1])
        # The documented default, read as a user's value would be, is the real default.
        actual = defaults[name].default_factory() if spec.kind == "table" else defaults[name].default
        assert spec.convert(name, documented) == actual, (section, name)
        assert row[2] == spec.help, (section, name)
    # Word for word what markdown_table() renders, so the table can be regenerated from it.
    assert "\n".join(table_lines) + "\n" == markdown_table(schema)


@pytest.mark.parametrize(("section", "driver"), [("default (console)", ConsoleDriver), ("discard", DiscardDriver)])
def test_drivers_without_settings_say_so(section: str, driver: Any) -> None:
    assert driver.settings_schema is NoSettings and schema_fields(NoSettings) == ()
    assert "has no `setting` keys" in " ".join(doc_section(section).split())


# -- load_config rejects bad settings ----------------------------------------------------


def test_load_config_rejects_a_bad_file_size_naming_source_key_value_and_what_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "app.toml"
    path.write_text('[trace.f]\ndriver = "file"\n[trace.f.setting]\nmaxsize = "huge"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    error = info.value
    assert (error.key, error.value, error.source) == ("trace.f.setting.maxsize", "huge", str(path))
    assert str(error) == f'{path}: trace.f.setting.maxsize = "huge" is invalid: expected {SIZE_HELP}'
    with pytest.raises(ConfigError) as again:
        infratrace.configure(path)
    assert str(again.value) == str(error)


def test_unknown_keys_list_every_valid_key_and_alias() -> None:
    error = load_error('[trace.f]\ndriver = "file"\n[trace.f.setting]\noutptu = "x"')
    assert error.key == "trace.f.setting.outptu"
    assert error.expected == (
        "unknown key; valid keys: compress, file, lock, maxage, maxfiles, maxline, maxlines, maxsize, output, path, slice, store"
    )
    error = load_error('[trace.c]\ndriver = "console"\n[trace.c.setting]\ncolor = true')
    assert (error.key, error.expected) == ("trace.c.setting.color", "unknown key; valid keys: none (this driver has no settings)")
    error = load_error('[trace.o]\ndriver = "otlp"\n[trace.o.setting]\nendpint = "http://x"')
    assert error.key == "trace.o.setting.endpint" and "endpoint, headers, insecure" in error.expected


def test_unknown_driver_fails_in_load_config() -> None:
    error = load_error('[trace.x]\ndriver = "nope"')
    assert error.key == "trace.x.driver"
    assert error.expected.startswith("unknown driver; available: ") and "file" in error.expected


def test_aliases() -> None:
    file = load_config('[trace.f]\ndriver = "file"\n[trace.f.setting]\npath = "a.log"\nmaxlines = 3').connections[0]
    assert (file.settings.output, file.settings.maxline) == ("a.log", 3)
    greptime = load_config(
        '[trace.g]\ndriver = "greptime"\n[trace.g.setting]\nserver = "h"\ndb = "d"\nuser = "u"\ncompress = false'
    )
    settings = greptime.connections[0].settings
    assert (settings.host, settings.database, settings.username, settings.gzip) == ("h", "d", "u", False)
    assert load_config('[trace.o]\ndriver = "otlp"\n[trace.o.setting]\nurl = "http://c:4318/v1/traces"').connections[
        0
    ].settings.endpoint == ("http://c:4318/v1/traces")


def test_a_key_and_its_alias_together_are_an_error() -> None:
    error = load_error('[trace.f]\ndriver = "file"\n[trace.f.setting]\noutput = "a"\nfile = "b"')
    assert (error.key, error.expected) == ("trace.f.setting.file", "'output' and 'file' are the same setting; set only one")


@pytest.mark.parametrize(
    ("driver", "line", "key", "value", "expected"),
    [
        # str
        ("file", "output = 1", "output", 1, "expected a string"),
        ("greptime", "host = true", "host", True, "expected a string"),
        # bool
        ("file", 'lock = "yes"', "lock", "yes", "expected true or false"),
        ("otlp", "insecure = 1", "insecure", 1, "expected true or false"),
        # int with a minimum (and maximum)
        ("file", "maxfiles = -1", "maxfiles", -1, "expected a whole number >= 0"),
        ("file", "maxline = 1.5", "maxline", 1.5, "expected a whole number >= 0"),
        ("file", "maxline = true", "maxline", True, "expected a whole number >= 0"),
        ("greptime", "port = 0", "port", 0, "expected a whole number between 1 and 65535"),
        ("greptime", "port = 70000", "port", 70000, "expected a whole number between 1 and 65535"),
        # duration
        ("file", 'maxage = "old"', "maxage", "old", f"expected {DURATION_HELP}"),
        ("file", "maxage = -1", "maxage", -1, f"expected {DURATION_HELP}"),
        ("otlp", "timeout = 0", "timeout", 0, f"expected a positive duration: {DURATION_HELP}"),
        ("greptime", 'timeout = "never"', "timeout", "never", f"expected a positive duration: {DURATION_HELP}"),
        # size
        ("file", 'maxsize = "huge"', "maxsize", "huge", f"expected {SIZE_HELP}"),
        ("file", "maxsize = -1", "maxsize", -1, f"expected {SIZE_HELP}"),
        ("file", "maxsize = [1]", "maxsize", [1], f"expected {SIZE_HELP}"),
        # choice
        ("file", 'slice = "week"', "slice", "week", "expected one of '', 'year', 'month', 'day', 'hour'"),
        ("otlp", 'encoding = "xml"', "encoding", "xml", "expected one of 'protobuf', 'json'"),
        ("greptime", "protocol = 1", "protocol", 1, "expected one of 'grpc', 'http'"),
        # table, and the kind of its values
        ("otlp", 'headers = "x"', "headers", "x", "expected a table"),
        ("otlp", "headers = { a = 1 }", "headers.a", 1, "expected a string"),
    ],
)
def test_a_wrong_value_of_each_kind(driver: str, line: str, key: str, value: Any, expected: str) -> None:
    error = load_error(f'[trace.c]\ndriver = "{driver}"\n[trace.c.setting]\n{line}')
    assert (error.key, error.value, error.expected) == (f"trace.c.setting.{key}", value, expected)
    assert str(error) == f"<string>: trace.c.setting.{key} = {toml_text(value)} is invalid: {expected}"


def test_file_validate_rejects_an_empty_output_under_the_name_written() -> None:
    error = load_error('[trace.f]\ndriver = "file"\n[trace.f.setting]\npath = ""')
    assert (error.key, error.expected) == ("trace.f.setting.path", "expected a file name")


# -- a third-party schema, and the number kind ---------------------------------------------


@dataclasses.dataclass(frozen=True)
class AcmeSettings:
    ratio: float = number(0.5, "share of spans sent", maximum=1.0)
    token: str = text("", "API token", secret=True)
    labels: Mapping[str, Any] = table("labels added to every span")


class AcmeDriver:
    settings_schema = AcmeSettings
    built: ClassVar[list[AcmeSettings]] = []

    def __init__(self, config: ConnectionConfig) -> None:
        AcmeDriver.built.append(settings_for(config, AcmeSettings))

    def write(self, spans: Sequence[Any]) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize("value", ['"x"', "2", "-0.5", "nan", "true"])
def test_number_kind(registered: Any, value: str) -> None:
    registered("acme-number", AcmeDriver)
    error = load_error(f'[trace.a]\ndriver = "acme-number"\n[trace.a.setting]\nratio = {value}')
    assert error.key == "trace.a.setting.ratio" and error.expected == "expected a number between 0.0 and 1.0"


def test_a_third_party_schema_is_checked_and_its_object_reaches_the_driver(registered: Any) -> None:
    registered("acme", AcmeDriver)
    config = load_config('[trace.a]\ndriver = "acme"\n[trace.a.setting]\nratio = 1\ntoken = "s3cret"\nlabels = { team = "x" }')
    settings = config.connections[0].settings
    assert settings == AcmeSettings(ratio=1.0, token="s3cret", labels={"team": "x"})
    assert isinstance(settings.ratio, float) and math.isclose(settings.ratio, 1.0)
    AcmeDriver.built.clear()
    infratrace.get_hook().configure(config)
    assert AcmeDriver.built == [settings]  # the very object load_config() made
    infratrace.shutdown()


def test_a_driver_without_a_schema_gets_its_table_untouched(registered: Any) -> None:
    seen: list[ConnectionConfig] = []

    def factory(config: ConnectionConfig) -> DiscardDriver:
        seen.append(config)
        return DiscardDriver(ConnectionConfig(name=config.name, path=config.path))

    registered("raw", factory)
    table_ = {"anything": {"nested": [1, "two"]}, "maxsize": "huge"}
    config = load_config({"trace": {"r": {"driver": "raw", "setting": table_}}})
    conn = config.connections[0]
    assert conn.setting == table_ and conn.settings == table_ and isinstance(conn.settings, dict)
    infratrace.get_hook().configure(config)
    assert seen[0].settings == table_
    infratrace.shutdown()


def test_secrets_are_masked_and_kept_out_of_repr() -> None:
    settings = (
        load_config('[trace.g]\ndriver = "greptime"\n[trace.g.setting]\nurl = "greptime://u:hunter2@h/db"')
        .connections[0]
        .settings
    )
    assert settings.password == "hunter2"
    assert "hunter2" not in repr(settings)
    shown = masked(settings)
    assert shown["password"] == shown["url"] == "***" and shown["username"] == "u"
    assert {name for name, spec in schema_fields(OTLPSettings) if spec.secret} == {"headers"}
    assert masked(OTLPSettings())["headers"] == {}  # an empty secret is shown as empty


def test_schema_mistakes_are_type_errors(registered: Any) -> None:
    class NotADataclass:
        pass

    class Driver:
        settings_schema = NotADataclass

    registered("bad-schema", Driver)
    with pytest.raises(TypeError, match="must be a dataclass"):
        load_config('[trace.b]\ndriver = "bad-schema"')

    @dataclasses.dataclass(frozen=True)
    class Plain:
        name: str = ""

    with pytest.raises(TypeError, match=r"Plain\.name is not declared"):
        parse_settings(Plain, {}, "trace.setting")

    @dataclasses.dataclass(frozen=True)
    class Twice:
        a: str = text("", "a", aliases=("b",))
        b: str = text("", "b")

    with pytest.raises(TypeError, match="'b' is declared twice"):
        parse_settings(Twice, {}, "trace.setting")


# -- greptime: url / dsn ------------------------------------------------------------------------


def greptime(body: str) -> Any:
    return load_config(f'[trace.g]\ndriver = "greptime"\n[trace.g.setting]\n{body}').connections[0].settings


@pytest.mark.parametrize(
    ("line", "key", "words"),
    [
        ('url = "mysql://h/db"', "url", "expected a greptime://, grpc://, http:// or https:// URL"),
        ('dsn = "greptime://h/a/b/c"', "dsn", "expected at most /<database>/<table> as the path"),
        ('url = "greptime://h?colour=red"', "url", "unknown query parameter 'colour'; valid: insecure, tls, timeout, protocol"),
        ('url = "greptime://h:99999"', "url", "the port is not a number between 0 and 65535"),
        ('url = "greptime://h?insecure=maybe"', "url", "insecure must be true or false"),
        ('url = "greptime://h?timeout=soon"', "url", f"timeout must be {DURATION_HELP}"),
        ('url = "greptime://h?timeout=0s"', "url", "timeout must be a positive duration"),
        ('dsn = "greptime://h?protocol=udp"', "dsn", "protocol must be grpc or http"),
        ('url = "greptime://h"\ndsn = "greptime://i"', "dsn", "'url' and 'dsn' are the same setting; set only one"),
        ("url = 5", "url", "expected a string"),
        ('server = ""', "server", "expected a host name or address"),
        ('db = ""', "db", "expected a database name"),
        ('table = ""', "table", "expected a table name"),
        ('write_path = "write"', "write_path", "expected a path starting with '/'"),
        ("tls = true", "ca", "gRPC over TLS needs the path of the server's CA certificate (PEM) in 'ca'"),
        ("insecure = false", "ca", "gRPC over TLS needs the path of the server's CA certificate (PEM) in 'ca'"),
        ('url = "greptime://h?tls=true"', "ca", "gRPC over TLS needs the path of the server's CA certificate (PEM) in 'ca'"),
    ],
)
def test_greptime_dsn_and_cross_key_errors(line: str, key: str, words: str) -> None:
    error = load_error(f'[trace.g]\ndriver = "greptime"\n[trace.g.setting]\n{line}')
    assert error.key == f"trace.g.setting.{key}"
    assert error.expected == words
    assert str(error).startswith(f"<string>: trace.g.setting.{key} = ")


def test_greptime_url_parts_fill_the_keys_not_set() -> None:
    settings = greptime('url = "greptime://u:p@h1:5001/db1/t1?timeout=2s"\nhost = "h2"\ndb = "db2"\npass = "p2"')
    assert (settings.host, settings.port, settings.database, settings.table) == ("h2", 5001, "db2", "t1")
    assert (settings.username, settings.password, settings.timeout, settings.protocol) == ("u", "p2", 2.0, "grpc")
    assert settings.tls is False and settings.insecure is True


def test_greptime_port_follows_the_protocol_and_https_means_tls() -> None:
    assert greptime("").port == 4001
    assert greptime('protocol = "http"').port == 4000
    http = greptime('url = "https://gt.local"')
    assert (http.protocol, http.port, http.tls, http.host) == ("http", 4000, True, "gt.local")
    assert greptime('url = "http://gt.local:9000"\nport = 9100').port == 9100
    secure = greptime('insecure = false\nca = "/etc/ca.pem"')
    assert secure.tls is True and secure.ca == "/etc/ca.pem"


def test_the_driver_uses_the_validated_settings() -> None:
    config = load_config(
        '[trace.g]\ndriver = "greptime"\n[trace.g.setting]\nurl = "http://gt.local"\ndatabase = "obs"\ngzip = false'
    )
    driver = GreptimeDriver(config.connections[0])
    assert driver.target is config.connections[0].settings
    assert driver.url == "http://gt.local:4000/v1/influxdb/write?db=obs&precision=ns"
    driver.close()


# -- otlp ----------------------------------------------------------------------------------------


def test_otlp_header_value_must_be_a_string() -> None:
    error = load_error('[trace.o]\ndriver = "otlp"\n[trace.o.setting.headers]\nauthorization = 42')
    assert (error.key, error.value, error.expected) == ("trace.o.setting.headers.authorization", 42, "expected a string")


def test_otlp_endpoint_is_checked_under_the_name_written() -> None:
    error = load_error('[trace.o]\ndriver = "otlp"\n[trace.o.setting]\nurl = "ftp://x/v1/traces"')
    assert (error.key, error.expected) == ("trace.o.setting.url", "expected an http:// or https:// URL")


def test_otlp_environment_variables_are_read_by_the_driver_not_by_load_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "a=1,b=2")
    config = load_config('[trace.o]\ndriver = "otlp"\n[trace.o.setting.headers]\nb = "3"')
    settings = config.connections[0].settings
    assert settings.endpoint == "" and dict(settings.headers) == {"b": "3"}
    driver = otlp.OTLPDriver(config.connections[0])
    assert driver.endpoint == "http://collector:4318/v1/traces"
    assert otlp._headers(settings) == {"a": "1", "b": "3"}  # a TOML header replaces the environment's
    driver.close()
    # A bad endpoint from the environment is still reported when the driver is built.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://collector")
    config = load_config('[trace.o]\ndriver = "otlp"')
    with pytest.raises(ConfigError) as info:
        infratrace.get_hook().configure(config)
    assert info.value.key == "trace.o.setting.endpoint"


# -- configs not made by load_config ---------------------------------------------------------


def test_a_hand_made_connection_config_is_checked_by_the_driver() -> None:
    with pytest.raises(ConfigError) as info:
        FileDriver(ConnectionConfig(name="h", driver="file", setting={"maxsize": "huge"}, path="trace.h"))
    assert info.value.key == "trace.h.setting.maxsize" and info.value.expected == f"expected {SIZE_HELP}"
    with pytest.raises(ConfigError) as info:
        ConsoleDriver(ConnectionConfig(name="h", setting={"color": True}, path="trace.h"))
    assert info.value.key == "trace.h.setting.color"


def test_a_factory_registered_without_the_schema_still_gets_the_checks(registered: Any) -> None:
    registered("wrapped-file", lambda config: FileDriver(config))
    config = load_config('[trace.w]\ndriver = "wrapped-file"\n[trace.w.setting]\nmaxsize = "huge"')
    assert config.connections[0].settings == {"maxsize": "huge"}  # load_config cannot know
    with pytest.raises(ConfigError) as info:
        infratrace.get_hook().configure(config)
    assert str(info.value) == f'<string>: trace.w.setting.maxsize = "huge" is invalid: expected {SIZE_HELP}'


def test_load_config_imports_no_optional_dependency() -> None:
    code = (
        "import sys, infratrace\n"
        'infratrace.load_config(\'[trace.g]\\ndriver = "greptime"\\n[trace.o]\\ndriver = "otlp"\')\n'
        "print(sorted(m for m in sys.modules if m.startswith(('greptimedb_ingester', 'opentelemetry', 'grpc'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


# -- infratrace check ------------------------------------------------------------------------


def test_check_rejects_a_bad_file_with_the_same_message_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = tmp_path / "logs"
    path = tmp_path / "bad.toml"
    path.write_text(f'[trace.f]\ndriver = "file"\n[trace.f.setting]\nstore = "{logs}"\nmaxsize = "huge"\n')
    assert cli_main(["check", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"invalid: {load_error_from(path)}\n"
    assert f'{path}: trace.f.setting.maxsize = "huge" is invalid: expected a size' in err
    assert not logs.exists()


def test_check_accepts_a_good_file_without_building_its_drivers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logs = tmp_path / "logs"
    path = tmp_path / "good.toml"
    path.write_text(f'[trace.f]\ndriver = "file"\n[trace.f.setting]\nstore = "{logs}"\n[trace.o]\ndriver = "otlp"\n')
    assert cli_main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: valid, 2 connections\n")
    assert '\n[trace.f] driver = "file": format lines\n' in out and '\n[trace.o] driver = "otlp": OTLP/HTTP requests\n' in out
    assert not logs.exists()


def test_check_reports_an_unknown_driver(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[trace.x]\ndriver = "nope"\n')
    assert cli_main(["check", str(path)]) == 1
    assert f'invalid: {path}: trace.x.driver = "nope" is invalid: unknown driver; available: ' in capsys.readouterr().err


def load_error_from(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        infratrace.configure(path)  # configure(), so the message is the one configure() gives
    return info.value
