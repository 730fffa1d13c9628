"""The stable JSON schema, `fields` selection/renaming, `format` lines."""

from __future__ import annotations

import re
import time

import pytest

import infratrace
from infratrace._fields import DEFAULT_FIELDS, FIELD_NAMES


def test_json_line_has_exactly_the_stable_schema(span_file):
    out = span_file()
    infratrace.begin("x", {"k": "v"}).end()
    (record,) = out.spans()
    assert tuple(record) == DEFAULT_FIELDS
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", record["timestamp"])
    assert record["start_ms"] == record["start_time_unix_nano"] // 1_000_000
    assert abs(record["start_time_unix_nano"] / 1e9 - time.time()) < 5
    assert record["resource"]["process.pid"] > 0
    assert record["resource"]["service.name"] == record["service_name"]
    assert record["node"] == record["resource"]["node"]


def test_flag_is_added_when_configured(span_file):
    out = span_file('flag = "canary"')
    infratrace.trace("x")
    assert out.spans()[0]["flag"] == "canary"


def test_fields_list_selects_in_order_with_aliases(span_file):
    out = span_file('fields = ["traceId", "name", "costMs", "attributes.user", "entry", "flag"]\nflag = "f"')
    infratrace.trace("service:user.login", {"user": "ann"})
    (record,) = out.spans()
    assert list(record) == ["traceId", "name", "costMs", "attributes.user", "entry", "flag"]
    assert record["name"] == "service:user.login" and record["attributes.user"] == "ann"
    assert record["entry"] == "service" and record["flag"] == "f"


def test_fields_table_renames_and_keeps_the_rest(span_file):
    out = span_file('fields = { trace_id = "tid", span_id = "sid", parent_span_id = "psid", timestamp = "ts", ts = "local" }')
    infratrace.trace("x")
    (record,) = out.spans()
    assert {"tid", "sid", "psid", "ts", "local"} <= set(record)
    assert not {"trace_id", "span_id", "parent_span_id", "timestamp"} & set(record)
    assert "name" in record and "resource" in record
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", record["local"])


def test_every_documented_name_renders_in_a_format(span_file, capsys):
    names = sorted(n for n in FIELD_NAMES)
    template = "|".join(f"{n}=%{n}%" for n in names)
    infratrace.configure({"trace": {"driver": "default", "format": template, "flag": "F"}})
    with infratrace.begin("http:GET /x", infratrace.trace_attrs("web", "http", "/x")):
        pass
    infratrace.force_flush()
    line = capsys.readouterr().out.strip()
    values = dict(part.split("=", 1) for part in line.split("|"))
    assert set(values) == set(names)
    assert values["name"] == values["step"] == values["span"] == values["span_name"] == "http:GET /x"
    assert values["traceId"] == values["trace_id"] and len(values["trace_id"]) == 32
    assert values["service"] == values["service_name"] == "web"
    assert values["entry"] == "http" and values["kind"] == "server" and values["flag"] == "F"
    assert values["result"] == values["status"] == "ok" and values["code"] == "0"
    assert values["costMs"] == values["durationMs"] == values["duration_ms"]
    assert int(values["duration"]) == int(values["duration_nano"]) >= 0
    assert values["start"] == values["start_time_unix_nano"]
    assert values["attrs"] == values["attributes"]


def test_default_format_is_the_seed_line(capsys):
    infratrace.configure({})
    infratrace.trace("hello")
    infratrace.force_flush()
    line = capsys.readouterr().out.strip()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[ok\] hello trace=[0-9a-f]{32} span=[0-9a-f]{16} cost=\d+\.\d{3}ms", line
    )


@pytest.mark.parametrize("name", ["attributes.user", "attrs.user", "resource.project"])
def test_dotted_placeholders(name, capsys):
    infratrace.configure({"trace": {"format": f"[%{name}%]"}, "infratrace": {"project": "p1"}})
    infratrace.trace("x", {"user": "bob"})
    infratrace.force_flush()
    assert capsys.readouterr().out.strip() in ("[bob]", "[p1]")


def test_non_string_service_and_target_attributes_stay_valid_json(span_file):
    out = span_file()
    infratrace.trace("a", {"service": 7, "target": ["x", 1]})
    infratrace.trace("b", {"service": 'svc "quoted"', "target": "/users/{id}"})
    spans = out.by_name()
    assert spans["a"]["service_name"] == "7" and spans["a"]["target"] == ["x", 1]
    assert spans["b"]["service_name"] == 'svc "quoted"' and spans["b"]["target"] == "/users/{id}"
