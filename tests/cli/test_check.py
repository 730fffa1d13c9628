"""``infratrace check``: every error with configure()'s message, a valid file described,
no side effects, and ``--test-write`` through real destinations."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import infratrace
from infratrace import ConfigError
from infratrace._config import check_config, load_config
from tests.drivers.conftest import Collector, free_port

from .conftest import Cli, run_module

APP = """\
[infratrace]
project = "shop"
service = "shop-web"

[myapp]
debug = true

[tracer]
depth = 3

[trace.file]
driver = "file"
json = true
fields = { trace_id = "tid", name = "step" }
[trace.file.setting]
store = "{logs}"
output = "traces.jsonl"
maxsize = "100MB"
maxfiles = 10
compress = true
[trace.file.sample]
rate = 0.2
slow = "500ms"
rules = [{ name = "http:*", sample = 0.1 }, { name = "service:user.*", sample = 1, attrs = { vip = true } }]

[trace.otlp]
driver = "otlp"
overflow = "drop"
fields = ["traceId", "costMs"]
[trace.otlp.setting]
endpoint = "{endpoint}"
headers = { authorization = "Bearer secret-token" }
timeout = "1m30s"

[trace.db]
driver = "greptime"
[trace.db.setting]
url = "greptime://writer:hunter2@127.0.0.1:4001/public/spans"
"""

DESCRIPTION = """\
{path}: valid, 3 connections
  resource: service.name = "shop-web", project = "shop", profile = "default", node = "{node}"
  limits: attributes = 128, value_length = 8192, list_items = 1000
  propagators: tracecontext, baggage

[trace.file] driver = "file": JSON lines
  setting:
    store    = "{logs}"
    output   = "traces.jsonl"
    maxsize  = "100MB"
    slice    = "" (off)
    maxline  = 0 (off)
    compress = true
    maxage   = 0 (off)
    maxfiles = 10
    lock     = true
  buffer = 1024, timeout = "200ms", overflow = "sync" (the driver's default)
  sample:
    rate = 0.2, error = true, slow = "500ms", parent = "honor", key = "trace_id", salt = "" (random per process)
    pending_spans = 1000, pending_traces = 100
    rules, the first that matches the local root decides:
      1. name = "http:*" → 0.1
      2. name = "service:user.*", attrs = { vip = "true" } → 1
      otherwise → rate 0.2
  fields: trace_id → "tid", name → "step"; the other keys as in the stable schema

[trace.otlp] driver = "otlp": OTLP/HTTP requests
  setting:
    endpoint    = "{endpoint}"
    timeout     = "90s"
    service     = "" (the resource's service.name)
    headers     = ***
    encoding    = "protobuf"
    compression = "none"
    insecure    = false
  buffer = 1024, timeout = "200ms", overflow = "drop"
  sample: every trace; a trace with an error is kept whole
  fields: only traceId (= trace_id), costMs (= duration_ms)

[trace.db] driver = "greptime": GreptimeDB rows
  setting:
    url        = ***
    protocol   = "grpc" (http for an http:// or https:// url)
    host       = "127.0.0.1"
    port       = 4001 (4000 for HTTP)
    username   = "writer"
    password   = ***
    database   = "public"
    table      = "spans"
    timeout    = "5s"
    insecure   = true
    tls        = false (true for https:// or insecure = false)
    ca         = ""
    write_path = "/v1/influxdb/write"
    gzip       = true
  buffer = 1024, timeout = "200ms", overflow = "sample" (the driver's default)
  sample: every trace; a trace with an error is kept whole
note: [myapp] is not infratrace's and is ignored
note: [tracer] is not infratrace's and is ignored (did you mean [trace]?)
"""

BROKEN = """\
[infratrace]
project = 5
colour = "blue"

[tracing.console]
driver = "default"

[limits]
attributes = 0

[trace.f]
driver = "file"
json = 1
buffer = -1
[trace.f.setting]
output = "{logs}/x.jsonl"
maxsize = "huge"
compress = "yes"
colour = 1
[trace.f.sample]
error = "yes"
rules = [{ name = "http:*", sample = "x" }, { name = 3, sample = 0.5 }]

[trace.x]
driver = "nope"
fields = { trace_id = "", bogus = "b" }
"""

BROKEN_ERRORS = [
    'tracing = { console = { driver = "default" } } is invalid: unknown table; did you mean [trace]?',
    "infratrace.project = 5 is invalid: expected a string",
    'infratrace.colour = "blue" is invalid: unknown key; valid keys: service, project, profile, role, node, attributes',
    "limits.attributes = 0 is invalid: expected a whole number >= 1",
    "trace.f.json = 1 is invalid: expected true or false",
    "trace.f.buffer = -1 is invalid: expected a whole number of spans >= 1",
    'trace.f.setting.maxsize = "huge" is invalid: expected a size such as "100MB", "512KB", "1GB" or a number of bytes',
    'trace.f.setting.compress = "yes" is invalid: expected true or false',
    "trace.f.setting.colour = 1 is invalid: unknown key; valid keys: compress, file, lock, maxage, maxfiles, maxline, "
    "maxlines, maxsize, output, path, slice, store",
    'trace.f.sample.error = "yes" is invalid: expected true or false',
    'trace.f.sample.rules[0].sample = "x" is invalid: expected a number between 0 and 1',
    "trace.f.sample.rules[1].name = 3 is invalid: expected a span name or a glob (fnmatch: *, ?, [...])",
    'trace.x.driver = "nope" is invalid: unknown driver; available: console, default, discard, file, greptime, otlp',
    'trace.x.fields.trace_id = "" is invalid: expected the new name of the field (a non-empty string)',
]


def fill(text: str, **values: object) -> str:
    """``{name}`` replaced (the TOML texts have braces of their own)."""
    for name, value in values.items():
        text = text.replace("{" + name + "}", str(value))
    return text


@pytest.fixture
def app(tmp_path: Path) -> tuple[Path, Path, str]:
    logs = tmp_path / "logs"
    endpoint = f"http://127.0.0.1:{free_port()}/v1/traces"
    path = tmp_path / "app.toml"
    path.write_text(fill(APP, logs=logs, endpoint=endpoint))
    return path, logs, endpoint


def test_tables_not_ours_are_errors_unless_the_file_is_shared_with_the_application(cli: Cli, app: tuple[Path, Path, str]) -> None:
    path, logs, _ = app
    result = cli("check", path)
    assert result.code == 1
    assert result.out == ""
    shared = "infratrace reads [trace], [infratrace], [limits] (--app-tables: the file is shared with the application)"
    assert result.err.splitlines() == [
        f"invalid: {path}: myapp = {{ debug = true }} is invalid: unknown table; {shared}",
        f"invalid: {path}: tracer = {{ depth = 3 }} is invalid: unknown table; did you mean [trace]? {shared}",
        "2 errors",
    ]
    assert not logs.exists()


def test_a_valid_file_is_described_and_nothing_is_created(cli: Cli, app: tuple[Path, Path, str]) -> None:
    path, logs, endpoint = app
    result = cli("check", "--app-tables", path)
    assert result.code == 0, result.err
    assert result.err == ""
    assert result.out == fill(DESCRIPTION, path=path, logs=logs, endpoint=endpoint, node=socket.gethostname())
    assert "secret-token" not in result.out and "hunter2" not in result.out
    assert not logs.exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["app.toml"]


def test_every_error_is_listed_with_the_message_configure_gives(cli: Cli, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    path = tmp_path / "broken.toml"
    path.write_text(fill(BROKEN, logs=logs))
    result = cli("check", path)
    assert result.code == 1
    assert result.out == ""
    unknown_field = result.err.splitlines()[-2]
    assert result.err.splitlines() == [f"invalid: {path}: {message}" for message in BROKEN_ERRORS] + [
        unknown_field,
        f"{len(BROKEN_ERRORS) + 1} errors",
    ]
    assert unknown_field.startswith(
        f"invalid: {path}: trace.x.fields.bogus = \"b\" is invalid: unknown field 'bogus'; expected a field name ("
    )
    with pytest.raises(ConfigError) as info:
        infratrace.configure(path)
    assert result.err.splitlines()[0] == f"invalid: {info.value}"
    assert not logs.exists()


BAD_FILES = [
    '[trace.x]\ndriver = "nope"\n',
    '[tracing.console]\ndriver = "default"\n',
    '[trace.f]\ndriver = "file"\n[trace.f.setting]\nmaxsize = "huge"\n',
    '[trace.f.sample]\nrules = [{ name = "http:*" }]\n',
    "[limits]\nlist_items = true\n",
    "trace = 3\n",
    '[trace]\ndriver = "default"\n[trace.default]\njson = true\n',
    '[trace.o]\ndriver = "otlp"\n[trace.o.setting]\nheaders = { "bad header" = "x" }\n',
    '[trace.g]\ndriver = "greptime"\n[trace.g.setting]\nurl = "ftp://nowhere"\n',
    '[trace]\nformat = "%nope%"\n',
    "[trace\n",
]


@pytest.mark.parametrize("text", BAD_FILES)
def test_a_single_error_is_exactly_load_config_s(tmp_path: Path, text: str) -> None:
    path = tmp_path / "one.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    config, errors = check_config(path)
    assert config is None
    assert [str(e) for e in errors] == [str(info.value)]


def test_a_bad_environment_variable_is_listed_with_the_file_s_errors(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFRATRACE_SAMPLE_RATE", "lots")
    path = tmp_path / "app.toml"
    path.write_text('[trace]\njson = "yes"\n')
    result = cli("check", path)
    assert result.code == 1
    assert result.err.splitlines() == [
        'invalid: environment: INFRATRACE_SAMPLE_RATE = "lots" is invalid: expected a number between 0 and 1',
        f'invalid: {path}: trace.json = "yes" is invalid: expected true or false',
        "2 errors",
    ]


def test_the_environment_it_reads_is_shown_with_headers_masked(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFRATRACE_SAMPLE_RATE", "0.5")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20t0ken")
    path = tmp_path / "app.toml"
    path.write_text('[trace]\ndriver = "discard"\n')
    result = cli("check", path)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert '  environment: INFRATRACE_SAMPLE_RATE = "0.5", OTEL_EXPORTER_OTLP_HEADERS = "***"' in lines
    assert "  sample: rate = 0.5 of the traces; a trace with an error is kept whole" in lines
    assert "t0ken" not in result.out


def test_without_an_argument_it_checks_what_configure_reads(
    cli: Cli, app: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = app[0].parent / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)  # no infratrace.toml here
    defaults = cli("check")
    assert defaults.code == 0
    assert defaults.out.startswith("<defaults>: valid, 1 connection\n")
    assert defaults.out.endswith(
        "note: no configuration given, INFRATRACE_CONFIG is unset and there is no ./infratrace.toml: these are the defaults\n"
    )
    local = app[0].parent / "infratrace.toml"
    local.write_text(app[0].read_text())
    monkeypatch.chdir(local.parent)
    assert cli("check").out == cli("check", local.resolve()).out  # ./infratrace.toml, as configure() finds it
    monkeypatch.setenv("INFRATRACE_CONFIG", str(app[0]))
    named = cli("check")
    assert named.out == cli("check", app[0]).out


def test_unreadable_and_unparsable_files_are_one_error(cli: Cli, tmp_path: Path) -> None:
    missing = cli("check", tmp_path / "missing.toml")
    assert missing.code == 1
    assert (
        missing.err
        == f"invalid: <file> = {json.dumps(str(tmp_path / 'missing.toml'))} is invalid: cannot be read (No such file or directory)\n"
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("[trace\n")
    result = cli("check", bad)
    assert result.code == 1
    assert result.err.startswith(f'invalid: {bad}: <toml> = "[trace\\n" is invalid: not valid TOML: ')
    assert result.err.count("\n") == 1


def test_test_write_sends_one_span_through_each_connection(cli: Cli, tmp_path: Path) -> None:
    collector = Collector()
    try:
        logs = tmp_path / "logs"
        path = tmp_path / "app.toml"
        path.write_text(
            f'[trace.file]\ndriver = "file"\njson = true\n[trace.file.setting]\nstore = "{logs}"\noutput = "t.jsonl"\n'
            f'[trace.otlp]\ndriver = "otlp"\n[trace.otlp.setting]\nendpoint = "{collector.url}"\n'
        )
        result = cli("check", path, "--test-write")
        assert result.code == 0, result.out + result.err
        lines = result.out.splitlines()
        header = next(line for line in lines if line.startswith("test write: "))
        trace_id = header.rsplit(" ", 1)[1]
        assert lines[-2:] == [
            f"  [trace.file] file: ok, written to {logs / 't.jsonl'}",
            f"  [trace.otlp] otlp: ok, written to {collector.url}",
        ]
        (written,) = [json.loads(line) for line in (logs / "t.jsonl").read_text().splitlines()]
        assert (written["name"], written["trace_id"], written["attributes"]) == (
            "infratrace.check",
            trace_id,
            {"infratrace.check": True},
        )
        (request,) = collector.wait_for(1)
        message = ExportTraceServiceRequest.FromString(request.body)
        (span,) = [s for rs in message.resource_spans for ss in rs.scope_spans for s in ss.spans]
        assert (span.name, span.trace_id.hex()) == ("infratrace.check", trace_id)
    finally:
        collector.close()


def test_test_write_reports_the_destination_s_error(cli: Cli, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1/traces"
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the store's directory should be")
    path = tmp_path / "app.toml"
    path.write_text(
        f'[trace.otlp]\ndriver = "otlp"\n[trace.otlp.setting]\nendpoint = "{closed}"\ntimeout = "300ms"\n'
        f'[trace.file]\ndriver = "file"\n[trace.file.setting]\nstore = "{blocker}"\n'
    )
    result = cli("check", path, "--test-write")
    assert result.code == 1
    lines = result.out.splitlines()
    assert lines[-2].startswith(f"  [trace.otlp] otlp: failed: DeliveryError: {closed}: ")
    assert "Connection refused" in lines[-2]
    assert lines[-1] == (
        f"  [trace.file] file: failed: {path}: trace.file.setting.store = {json.dumps(str(blocker))} is invalid: "
        "cannot create the directory: File exists"
    )


def test_check_in_a_new_process() -> None:
    result = run_module("check", "/nonexistent/infratrace.toml")
    assert result.returncode == 1
    assert (
        result.stderr
        == b'invalid: <file> = "/nonexistent/infratrace.toml" is invalid: cannot be read (No such file or directory)\n'
    )
