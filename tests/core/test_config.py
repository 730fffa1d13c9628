"""Every key and form of the configuration, and an error naming the key for each kind of bad input."""

from __future__ import annotations

import pytest

import infratrace
from infratrace import ConfigError, load_config


def test_no_trace_table_gives_one_default_console_connection():
    config = load_config({})
    assert [c.name for c in config.connections] == ["default"]
    conn = config.connections[0]
    assert (conn.driver, conn.json, conn.buffer, conn.timeout) == ("default", False, 1024, 0.2)
    assert conn.sample.rate == 1.0 and conn.sample.error is True and conn.sample.key == "trace_id"


def test_single_connection_keys_directly_under_trace():
    config = load_config(
        """
[trace]
driver = "default"
json = true
sample = 0.5
buffer = 2048
timeout = "1s"
format = "%name% %traceId%"
flag = "blue"
fields = ["trace_id", "name"]
"""
    )
    (conn,) = config.connections
    assert conn.name == "default"
    assert conn.json is True and conn.sample.rate == 0.5 and conn.buffer == 2048 and conn.timeout == 1.0
    assert conn.format == "%name% %traceId%" and conn.flag == "blue"
    assert conn.fields == ("trace_id", "name")
    assert conn.setting == {}


def test_several_connections_and_a_sample_table():
    config = load_config(
        """
[trace.console]
driver = "default"
json = true

[trace.file]
driver = "file"
fields = { trace_id = "tid", span_id = "sid", parent_span_id = "psid", timestamp = "ts" }
[trace.file.setting]
output = "x.log"

[trace.file.sample]
rate = 0.2
error = true
key = "trace_id"
rules = [
  { name = "http:*", sample = 0.1 },
  { name = "service:*", sample = 0.3 },
  { name = "service:user.*", sample = 1, attrs = { vip = true } }
]
"""
    )
    assert [c.name for c in config.connections] == ["console", "file"]
    file_conn = config.connections[1]
    assert file_conn.fields == {"trace_id": "tid", "span_id": "sid", "parent_span_id": "psid", "timestamp": "ts"}
    assert file_conn.sample.rate == 0.2
    assert [(r.name, r.ratio) for r in file_conn.sample.rules] == [("http:*", 0.1), ("service:*", 0.3), ("service:user.*", 1.0)]
    assert file_conn.sample.rules[2].attrs == (("vip", "true"),)
    assert file_conn.setting == {"output": "x.log"}
    assert file_conn.settings.output == "x.log" and file_conn.settings.maxsize == 0


def test_top_level_keys_and_named_tables_coexist():
    config = load_config({"trace": {"json": True, "other": {"driver": "discard"}}})
    assert [c.name for c in config.connections] == ["default", "other"]


def test_sample_is_clamped_and_accepts_alias():
    assert load_config({"trace": {"sample": 3}}).connections[0].sample.rate == 1.0
    assert load_config({"trace": {"sample": -1}}).connections[0].sample.rate == 0.0
    assert load_config({"trace": {"sample": {"sample": 0.25}}}).connections[0].sample.rate == 0.25


@pytest.mark.parametrize(("value", "seconds"), [("200ms", 0.2), ("5s", 5), ("1m", 60), ("7d", 604800), (2, 2.0), ("1.5", 1.5)])
def test_timeout_durations(value, seconds):
    assert load_config({"trace": {"timeout": value}}).connections[0].timeout == seconds


def test_resource_from_infratrace_table_with_defaults(monkeypatch):
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    config = load_config({"infratrace": {"project": "shop", "profile": "prod", "node": "n1", "role": "web"}})
    assert config.resource["project"] == "shop"
    assert config.resource["service.name"] == "shop"
    assert config.resource["profile"] == "prod"
    assert config.resource["node"] == "n1"
    assert config.resource["role"] == "web"
    import socket

    assert load_config({}).resource["node"] == socket.gethostname()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    assert load_config({}).resource["service.name"] == "from-env"


def test_config_file_path_and_env_variable(tmp_path, monkeypatch):
    path = tmp_path / "app.toml"
    path.write_text('[trace]\njson = true\n[database]\nurl = "ignored"\n')
    assert load_config(str(path)).connections[0].json is True
    assert load_config(path).source == str(path)
    monkeypatch.setenv("INFRATRACE_CONFIG", str(path))
    assert load_config(None).connections[0].json is True


# -- errors ---------------------------------------------------------------------------


def _error(source) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        infratrace.configure(source)
    return info.value


@pytest.mark.parametrize(
    ("toml", "key", "words"),
    [
        ('[trace]\ndriver = "nope"', "trace.driver", ["unknown driver", "file", "default"]),
        ("[trace]\njson = 1", "trace.json", ["true or false"]),
        ('[trace]\nsample = "half"', "trace.sample", ["number between 0 and 1"]),
        ("[trace]\nsample = true", "trace.sample", ["number between 0 and 1"]),
        ('[trace]\ntimeout = "soon"', "trace.timeout", ["duration", "200ms"]),
        ("[trace]\ntimeout = 0", "trace.timeout", ["positive"]),
        ("[trace]\nbuffer = 0", "trace.buffer", [">= 1"]),
        ('[trace]\nbuffer = "big"', "trace.buffer", ["whole number"]),
        ('[trace]\nformat = "%nope%"', "trace.format", ["%nope%", "trace_id"]),
        ('[trace]\nfields = ["trace_id", "bogus"]', "trace.fields[1]", ["unknown field"]),
        ('[trace]\nfields = { bogus = "x" }', "trace.fields.bogus", ["unknown field"]),
        ("[trace]\nfields = { trace_id = 1 }", "trace.fields.trace_id", ["new name"]),
        ("[trace]\nfields = 3", "trace.fields", ["list of field names"]),
        ("[trace]\njsn = true", "trace.jsn", ["unknown key"]),
        ('[trace.a]\ndriver = "default"\nbogus = 1', "trace.a.bogus", ["unknown key", "driver"]),
        ("[trace.a]\nsetting = 3", "trace.a.setting", ["table"]),
        ('[trace.a.sample]\nkey = "user"', "trace.a.sample.key", ["trace_id", "span_id", "trace_span"]),
        ('[trace.a.sample]\nerror = "yes"', "trace.a.sample.error", ["true or false"]),
        ('[trace.a.sample]\nrate = "x"', "trace.a.sample.rate", ["between 0 and 1"]),
        ("[trace.a.sample]\nrules = 1", "trace.a.sample.rules", ["list"]),
        ('[trace.a.sample]\nrules = ["http:*"]', "trace.a.sample.rules[0]", ["table"]),
        (
            '[trace.greptime.sample]\nrules = [{ name = "a", sample = 1 }, { name = "b", sample = "x" }]',
            "trace.greptime.sample.rules[1].sample",
            ["between 0 and 1"],
        ),
        ('[trace.a.sample]\nrules = [{ name = "a" }]', "trace.a.sample.rules[0].sample", ["needs a sample"]),
        ("[trace.a.sample]\nrules = [{ name = 3, sample = 1 }]", "trace.a.sample.rules[0].name", ["glob"]),
        ('[trace.a.sample]\nrules = [{ name = "a", sample = 1, attrs = 2 }]', "trace.a.sample.rules[0].attrs", ["table"]),
        ('[trace.a.sample]\nrules = [{ name = "a", sample = 1, when = 2 }]', "trace.a.sample.rules[0].when", ["unknown key"]),
        ("[trace.a.sample]\nrate = 1\nsample = 1", "trace.a.sample.sample", ["alias"]),
        ("[trace.a.sample]\nratio = 1", "trace.a.sample.ratio", ["unknown key"]),
        ('trace = "x"', "trace", ["table"]),
        ("[infratrace]\nproject = 3", "infratrace.project", ["string"]),
        ('[infratrace]\nname = "x"', "infratrace.name", ["unknown key"]),
        ('[trace]\njson = true\n[trace.default]\ndriver = "file"', "trace.default", ["already form"]),
        ('[trace.f]\ndriver = "file"\n[trace.f.setting]\nmaxsize = "huge"', "trace.f.setting.maxsize", ["100MB"]),
        ('[trace.f]\ndriver = "file"\n[trace.f.setting]\nslice = "week"', "trace.f.setting.slice", ["day", "hour"]),
        ('[trace.f]\ndriver = "file"\n[trace.f.setting]\nmaxage = "old"', "trace.f.setting.maxage", ["7d"]),
        ('[trace.f]\ndriver = "file"\n[trace.f.setting]\nmaxfiles = -1', "trace.f.setting.maxfiles", ["whole number"]),
        ('[trace.f]\ndriver = "file"\n[trace.f.setting]\ncompress = "yes"', "trace.f.setting.compress", ["true or false"]),
        ('[trace.f]\ndriver = "file"\n[trace.f.setting]\noutptu = "x"', "trace.f.setting.outptu", ["unknown key", "output"]),
        ('[trace.c]\ndriver = "default"\n[trace.c.setting]\ncolor = true', "trace.c.setting.color", ["unknown key"]),
        # sampling per trace, overflow
        ('[trace]\noverflow = "later"', "trace.overflow", ['"sync", "sample", "drop"']),
        ('[trace.sample]\nslow = "soon"', "trace.sample.slow", ["duration"]),
        ('[trace.sample]\nparent = "obey"', "trace.sample.parent", ['"honor"']),
        ("[trace.sample]\npending_spans = 0", "trace.sample.pending_spans", [">= 1"]),
        ("[trace.sample]\nsalt = 7", "trace.sample.salt", ["string"]),
        # limits
        ("[limits]\nattributes = 0", "limits.attributes", [">= 1"]),
        ('[limits]\nvalue_length = "big"', "limits.value_length", ["whole number"]),
        ("[limits]\nitems = 3", "limits.items", ["unknown key"]),
        ('limits = "x"', "limits", ["table"]),
        # OTLP headers and endpoint cannot smuggle lines
        ('[trace]\ndriver = "otlp"\n[trace.setting]\nheaders = { authorization = "Bearer x\\r\\nX-Injected: 1" }',
         "trace.setting.headers.authorization", ["control"]),
        ('[trace]\ndriver = "otlp"\n[trace.setting]\nheaders = { a = "x\\u0000" }', "trace.setting.headers.a", ["control"]),
        ('[trace]\ndriver = "otlp"\n[trace.setting]\nheaders = { "a b" = "x" }', "trace.setting.headers.a b", ["header name"]),
        ('[trace]\ndriver = "otlp"\n[trace.setting]\nendpoint = "http://127.0.0.1:4318/v1\\r\\nX: 1"',
         "trace.setting.endpoint", ["http://"]),
        # a misspelt table of ours
        ('[tracing.console]\ndriver = "default"', "tracing", ["did you mean [trace]?"]),
        ("[Trace]\nsample = 1", "Trace", ["did you mean [trace]?"]),
        ("[limit]\nattributes = 3", "limit", ["did you mean [limits]?"]),
        ('[infra_trace]\nproject = "x"', "infra_trace", ["did you mean [infratrace]?"]),
    ],
)  # fmt: skip
def test_bad_config_names_key_value_and_what_is_allowed(toml, key, words):
    error = _error(toml)
    message = str(error)
    assert error.key == key
    assert f"{key} = " in message
    assert message.startswith("<string>: ")
    for word in words:
        assert word in message


def test_error_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[trace]\ntimeout = "later"\n')
    message = str(_error(str(path)))
    assert message.startswith(f'{path}: trace.timeout = "later"')


def test_invalid_toml_and_missing_file(tmp_path):
    assert "not valid TOML" in str(_error("[trace\njson = true"))
    assert "cannot be read" in str(_error(str(tmp_path / "missing.toml")))


def test_env_variable_pointing_nowhere(monkeypatch, tmp_path):
    monkeypatch.setenv("INFRATRACE_CONFIG", str(tmp_path / "nope.toml"))
    error = _error(None)
    assert error.key == "INFRATRACE_CONFIG"


def test_a_failed_configure_keeps_the_previous_connections(span_file):
    out = span_file()
    with pytest.raises(ConfigError):
        infratrace.configure('[trace]\ndriver = "nope"')
    infratrace.trace("still-here")
    assert [s["name"] for s in out.spans()] == ["still-here"]


def test_reconfigure_flushes_and_closes_the_old_connections(tmp_path):
    first = tmp_path / "first.jsonl"
    second = tmp_path / "second.jsonl"
    infratrace.configure(f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{first}"')
    infratrace.trace("one")
    infratrace.configure(f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{second}"')
    infratrace.trace("two")
    infratrace.force_flush()
    assert "one" in first.read_text() and "two" not in first.read_text()
    assert "two" in second.read_text()
    infratrace.shutdown()
