"""The ``greptime`` driver: settings and DSN parsing, the column schema, line protocol
round trips through a real InfluxDB 1.x server, and the gRPC request it builds."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pytest

import infratrace
from infratrace import ConfigError, ConnectionConfig, MissingExtraError, Resource, Span, SpanData
from infratrace.drivers._http import HttpStatusError
from infratrace.drivers.greptime import (
    GreptimeDriver,
    LineProtocolEncoder,
    columns_for,
    escape_key,
    escape_measurement,
    escape_string_field,
    parse_dsn,
)
from tests.spans import span_data

from .conftest import Collector, Influx, free_port

RESOURCE = Resource({"service.name": "shop", "project": "shop", "profile": "test", "node": "n1", "role": "api", "process.pid": 7})
SEED_FIELDS = {"trace_id": "tid", "span_id": "sid", "parent_span_id": "psid", "timestamp": "ts"}


def make_span(name: str, attrs: dict[str, Any] | None = None, parent: SpanData | None = None) -> SpanData:
    return span_data(name, attrs, parent=parent, duration_ns=2_345_678, resource=RESOURCE)


def config(setting: dict[str, Any], **conn: Any) -> ConnectionConfig:
    return ConnectionConfig(name="g", driver="greptime", setting=setting, path="trace.g", **conn)


# -- settings ------------------------------------------------------------------------


def test_seed_dsn() -> None:
    assert parse_dsn("greptime://user:p%40ss@db.example:4001/public/traces?insecure=true&timeout=5s") == {
        "protocol": "grpc",
        "host": "db.example",
        "port": 4001,
        "username": "user",
        "password": "p@ss",
        "database": "public",
        "table": "traces",
        "insecure": True,
        "timeout": 5.0,
    }


def test_explicit_keys_override_the_url() -> None:
    target = GreptimeDriver(
        config({"url": "greptime://u:p@h1:5001/db1/t1?timeout=2s", "host": "h2", "db": "db2", "pass": "p2"})
    ).target
    assert (target.host, target.port, target.database, target.table) == ("h2", 5001, "db2", "t1")
    assert (target.username, target.password, target.timeout) == ("u", "p2", 2.0)
    assert target.protocol == "grpc" and not target.tls


def test_http_protocol_defaults() -> None:
    driver = GreptimeDriver(config({"url": "http://gt.local", "database": "obs"}))
    assert driver.target.protocol == "http"
    assert driver.url == "http://gt.local:4000/v1/influxdb/write?db=obs&precision=ns"
    driver = GreptimeDriver(config({"protocol": "http", "host": "10.0.0.1", "tls": True, "write_path": "/write"}))
    assert driver.url == "https://10.0.0.1:4000/write?db=public&precision=ns"
    assert GreptimeDriver(config({})).target.port == 4001


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ({"url": "mysql://h/db"}, "trace.g.setting.url"),
        ({"dsn": "greptime://h/a/b/c"}, "trace.g.setting.dsn"),
        ({"url": "greptime://h?colour=red"}, "trace.g.setting.url"),
        ({"port": 70000}, "trace.g.setting.port"),
        ({"protocol": "udp"}, "trace.g.setting.protocol"),
        ({"timeout": "never"}, "trace.g.setting.timeout"),
        ({"write_path": "write"}, "trace.g.setting.write_path"),
        ({"tls": True}, "trace.g.setting.ca"),
        ({"tabel": "x"}, "trace.g.setting.tabel"),
    ],
)
def test_bad_settings_fail_at_configure(setting: dict[str, Any], key: str) -> None:
    body = "".join(f"{k} = {json.dumps(v)}\n" for k, v in setting.items())
    with pytest.raises(ConfigError) as info:
        infratrace.configure(f'[trace.g]\ndriver = "greptime"\n[trace.g.setting]\n{body}')
    assert info.value.key == key
    assert "<string>" in str(info.value)


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "greptimedb_ingester", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'infratrace\[greptime\]'") as info:
        infratrace.configure('[trace.g]\ndriver = "greptime"\n')
    assert info.value.key == "trace.g.driver"
    # the HTTP protocol needs no extra
    infratrace.configure('[trace.g]\ndriver = "greptime"\n[trace.g.setting]\nprotocol = "http"\n')


# -- columns -------------------------------------------------------------------------


def roles(conn: ConnectionConfig) -> dict[str, str]:
    return {c.name: c.role for c in columns_for(conn)}


def test_default_columns_have_the_spec_roles() -> None:
    assert roles(config({})) == {
        **dict.fromkeys(("project", "role", "profile", "node", "service_name", "span_name", "step", "entry"), "tag"),
        "timestamp": "time",
        **dict.fromkeys(("start", "end", "duration", "code"), "int"),
        **dict.fromkeys(
            ("trace_id", "span_id", "parent_span_id", "kind", "target", "status", "error", "attributes", "resource"),
            "string",
        ),
    }


def test_seed_renames_and_selection() -> None:
    renamed = roles(config({}, fields=SEED_FIELDS))
    assert renamed["tid"] == renamed["sid"] == renamed["psid"] == "string"
    assert renamed["ts"] == "time"
    assert not {"trace_id", "span_id", "parent_span_id", "timestamp"} & set(renamed)
    extra = roles(config({}, fields={"attributes.user": "user_id", "duration_ms": "ms", "start_ms": "start_ms"}))
    assert (extra["user_id"], extra["ms"], extra["start_ms"]) == ("string", "float", "int")
    selected = columns_for(config({}, fields=("trace_id", "service_name", "duration"), flag="blue"))
    assert [(c.name, c.role) for c in selected] == [
        ("timestamp", "time"),
        ("trace_id", "string"),
        ("service_name", "tag"),
        ("duration", "int"),
        ("flag", "string"),
    ]
    with pytest.raises(ConfigError, match="at least one field column"):
        GreptimeDriver(config({}, fields=("service_name",)))


# -- line protocol -------------------------------------------------------------------


def test_line_protocol_escaping() -> None:
    assert escape_measurement("my table,v2") == "my\\ table\\,v2"
    assert escape_key("a=b c,d") == "a\\=b\\ c\\,d"
    assert escape_key("C:\\dir\\x") == "C:\\dir\\x"  # a lone backslash is literal
    assert escape_key("trail\\") == "trail\uff3c"  # would read as an escape
    assert escape_key("two\nlines") == "two\\nlines"
    assert escape_string_field('say "hi" \\o/') == 'say \\"hi\\" \\\\o/'


def test_line_shape() -> None:
    span = span_data("service:a b", {"service": "orders", "n": 1}, status="error", message="boom", code=503, resource=RESOURCE)
    encoder = LineProtocolEncoder("traces", columns_for(config({}, fields=("service_name", "span_name", "code", "error"))))
    assert encoder.line(span) == (
        f'traces,service_name=orders,span_name=service:a\\ b code=503i,error="boom" {span.start_time_unix_nano}'
    )


TRICKY_ATTRS = {
    "sql": "SELECT \"a\", b FROM t WHERE x = '1'",
    "path": "C:\\temp\\new",
    "multi": "line one\nline two\ttab",
    "nested": {"list": [1, 2.5, True, None], "quote": '"q"'},
    "unicode": "héllo, wörld = ok",
}


def test_round_trip_through_influxdb(influxd: Influx) -> None:
    influxd.create_database("obs")
    infratrace.configure(
        f"""
[infratrace]
service = "shop, west"
project = "shop=1"
profile = "test"
node = "node a"
[trace.g]
driver = "greptime"
flag = "canary"
[trace.g.setting]
url = "{influxd.url}"
write_path = "/write"
database = "obs"
table = "spans, v1"
"""
    )
    with infratrace.begin("http:GET /orders/{id}", {"http.route": "/orders/{id}"}, kind="server") as root:
        with infratrace.begin("service:orders load", infratrace.trace_attrs("orders", "service", "load", TRICKY_ATTRS)):
            pass
        failing = infratrace.begin("method:db,query")
        failing.end(status="error", code=500, message='timeout "after" 5s\nretry\\later')
    assert infratrace.force_flush(10)
    stats = infratrace.stats()["connections"]["g"]
    assert stats["written_count"] == 3 and stats["write_error_count"] == 0, stats

    rows = {row["span_id"]: row for row in influxd.rows("obs", "spans, v1")}
    assert len(rows) == 3
    resource = {"service.name": "shop, west", "project": "shop=1", "profile": "test", "node": "node a"}
    for span, entry in ((root, "http"), (failing, "method")):
        assert isinstance(span, Span)
        row = rows[span.span_id]
        assert row["time"] == span.start_time_unix_nano
        assert row["start"] == span.start_time_unix_nano
        assert row["end"] == span.end_time_unix_nano
        assert row["duration"] == span.end_time_unix_nano - span.start_time_unix_nano
        assert row["trace_id"] == root.trace_id
        assert row["parent_span_id"] == span.parent_span_id
        assert row["span_name"] == row["step"] == span.name
        assert row["entry"] == entry
        assert (row["project"], row["profile"], row["node"]) == ("shop=1", "test", "node a")
        assert row["service_name"] == "shop, west"
        assert row.get("role") is None  # no role configured: no tag
        assert row["flag"] == "canary"
        assert {k: v for k, v in json.loads(row["resource"]).items() if k in resource} == resource
    assert rows[failing.span_id]["code"] == 500
    assert rows[failing.span_id]["status"] == "error"
    assert rows[failing.span_id]["error"] == 'timeout "after" 5s\nretry\\later'
    assert rows[root.span_id]["kind"] == "server" and rows[root.span_id]["code"] == 0
    (child,) = [row for row in rows.values() if row["span_name"] == "service:orders load"]
    assert child["service_name"] == "orders" and child["target"] == "load"
    # A mapping attribute is written as JSON text (attribute values are flat everywhere).
    expected = {**TRICKY_ATTRS, "nested": json.dumps(TRICKY_ATTRS["nested"], separators=(",", ":"))}
    assert json.loads(child["attributes"]) == {**expected, "service": "orders", "kind": "service", "target": "load"}

    assert influxd.tag_keys("obs", "spans, v1") == {"project", "profile", "node", "service_name", "span_name", "step", "entry"}
    types = influxd.field_types("obs", "spans, v1")
    assert {k: types[k] for k in ("start", "end", "duration", "code")} == dict.fromkeys(
        ("start", "end", "duration", "code"), "integer"
    )
    assert {types[k] for k in ("trace_id", "span_id", "attributes", "resource", "error", "flag")} == {"string"}


def test_round_trip_with_seed_renames_and_gzip(influxd: Influx) -> None:
    influxd.create_database("seed")
    conn = config(
        {"url": influxd.url, "write_path": "/write", "db": "seed", "gzip": True},
        fields=SEED_FIELDS,
    )
    driver = GreptimeDriver(conn)
    parent = make_span("http:GET /", {"blob": "x" * 4000})
    child = make_span("web:index", parent=parent)
    driver.write([parent, child])
    rows = {row["sid"]: row for row in influxd.rows("seed", "traces")}
    assert rows[child.span_id]["psid"] == parent.span_id
    assert rows[child.span_id]["tid"] == parent.trace_id
    assert rows[parent.span_id]["time"] == parent.start_time_unix_nano
    assert rows[parent.span_id]["role"] == "api"
    assert driver.stats()["rows_written"] == 2


def test_rejected_write_is_not_retried(influxd: Influx) -> None:
    driver = GreptimeDriver(config({"url": influxd.url, "write_path": "/write", "db": "missing_db"}))
    with pytest.raises(HttpStatusError, match=r"HTTP 404.*database not found"):
        driver.write([make_span("a")])
    assert driver.stats()["request_count"] == 1


def test_http_basic_auth_and_gzip_body(collector: Collector) -> None:
    driver = GreptimeDriver(
        config({"protocol": "http", "host": "127.0.0.1", "port": collector.port, "user": "ann", "password": "s3cret"})
    )
    collector.default.status = 204
    spans = [make_span(f"s{i}", {"i": i}) for i in range(20)]
    driver.write(spans)
    received = collector.wait_for(1)[0]
    assert received.path == "/v1/influxdb/write?db=public&precision=ns"
    assert received.headers["Authorization"] == "Basic YW5uOnMzY3JldA=="
    assert received.headers["Content-Encoding"] == "gzip"
    lines = received.body.decode().splitlines()
    assert len(lines) == 20 and lines[3].startswith("traces,project=shop,role=api,profile=test,node=n1,service_name=shop")


# -- gRPC (no server is installable here: request construction and failure handling) ---


def test_grpc_columns_and_rows() -> None:
    ingester = pytest.importorskip("greptimedb_ingester")
    driver = GreptimeDriver(config({}, fields=SEED_FIELDS))
    schema = {c.name: (c.data_type, c.semantic_type) for c in driver.grpc_columns()}
    assert schema["ts"] == (ingester.ColumnDataType.TIMESTAMP_NANOSECOND, ingester.SemanticType.TIMESTAMP)
    assert schema["service_name"] == (ingester.ColumnDataType.STRING, ingester.SemanticType.TAG)
    assert schema["duration"] == (ingester.ColumnDataType.INT64, ingester.SemanticType.FIELD)
    assert schema["tid"] == (ingester.ColumnDataType.STRING, ingester.SemanticType.FIELD)
    span = make_span("service:x", {"service": "pay", "amount": 3})
    (row,) = driver.rows([span])
    record = dict(zip([c.name for c in driver.columns], row, strict=True))
    assert record["ts"] == record["start"] == span.start_time_unix_nano
    assert record["duration"] == 2_345_678
    assert record["service_name"] == "pay" and record["tid"] == span.trace_id and record["psid"] == ""
    assert json.loads(record["attributes"]) == {"service": "pay", "amount": 3}


def test_grpc_dead_server_fails_within_timeout() -> None:
    pytest.importorskip("greptimedb_ingester")
    driver = GreptimeDriver(config({"host": "127.0.0.1", "port": free_port(), "timeout": "600ms"}))
    started = time.monotonic()
    with pytest.raises(Exception, match=r"(?i)connect|unavailable"):
        driver.write([make_span("a")])
    assert time.monotonic() - started < 1.0
    stats = driver.stats()
    assert stats["retry_count"] >= 1 and stats["failed_request_count"] == 1 and stats["rows_written"] == 0
