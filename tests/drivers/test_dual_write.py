"""Dual-write (console and GreptimeDB at once, plus a file and an OTLP collector):
one dead destination delays and drops only its own spans; ending spans never waits
for it, the other connections keep writing, and ``stats()`` accounts for every span."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import infratrace

from .conftest import Collector, Influx, free_port

SPANS = 400  # 200 requests, each an http: span with a service: child


def received_span_names(collector: Collector) -> list[str]:
    names = []
    for request in collector.requests:
        for resource_spans in ExportTraceServiceRequest.FromString(request.body).resource_spans:
            for scope_spans in resource_spans.scope_spans:
                names += [s.name for s in scope_spans.spans]
    return names


def wait_until_received(collector: Collector, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(received_span_names(collector)) < count:
        assert time.monotonic() < deadline, f"{len(received_span_names(collector))} of {count} spans arrived"
        collector.wait_for(len(collector.requests) + 1, timeout=max(0.01, deadline - time.monotonic()))


def dual_write_config(tmp_path: Path, otlp_url: str, greptime_url: str, greptime_timeout: str) -> str:
    return f"""
[infratrace]
service = "shop"

[trace.console]
driver = "default"
json = true

[trace.file]
driver = "file"
json = true
[trace.file.setting]
output = "{tmp_path}/spans.jsonl"

[trace.otlp]
driver = "otlp"
[trace.otlp.setting]
endpoint = "{otlp_url}"

[trace.greptime]
driver = "greptime"
fields = {{ trace_id = "tid", span_id = "sid", parent_span_id = "psid", timestamp = "ts" }}
[trace.greptime.setting]
url = "{greptime_url}"
protocol = "http"
write_path = "/write"
database = "public"
table = "traces"
timeout = "{greptime_timeout}"
"""


def serve_requests(count: int) -> float:
    """Ending spans as a web app would; returns the slowest request's duration."""
    slowest = 0.0
    for i in range(count):
        started = time.perf_counter()
        with infratrace.begin(f"http:GET /orders/{i % 7}", {"http.route": "/orders/{id}"}, kind="server"):
            with infratrace.begin("service:orders.load", infratrace.trace_attrs("orders", "service", "load")):
                pass
        slowest = max(slowest, time.perf_counter() - started)
    return slowest


def assert_accounted(stats: dict[str, Any], name: str, ended: int) -> dict[str, Any]:
    connection: dict[str, Any] = stats["connections"][name]
    total = connection["written_count"] + connection["dropped_count"] + connection["sampled_out_count"] + connection["queue_len"]
    assert total == ended, (name, connection)
    return connection


def test_dead_greptime_does_not_slow_or_starve_the_others(
    tmp_path: Path, collector: Collector, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    infratrace.configure(dual_write_config(tmp_path, collector.url, dead, "2s"))
    slowest = serve_requests(SPANS // 2)
    assert slowest < 0.05, f"a request took {slowest * 1000:.1f} ms to end its spans"

    # The OTLP collector has every span while greptime is still retrying its first batch.
    wait_until_received(collector, SPANS, timeout=1.5)
    assert infratrace.stats()["connections"]["greptime"]["write_error_count"] == 0

    assert infratrace.force_flush(10)
    stats = infratrace.stats()
    assert stats["ended_count"] == SPANS
    for name in ("console", "file", "otlp"):
        connection = assert_accounted(stats, name, SPANS)
        assert connection["written_count"] == SPANS and connection["dropped_count"] == 0
    greptime = assert_accounted(stats, "greptime", SPANS)
    assert greptime["written_count"] == 0
    assert greptime["dropped_count"] == SPANS
    assert greptime["write_error_count"] >= 1
    assert "ConnectionRefusedError" in str(greptime["last_error"])

    out = capsys.readouterr()
    assert len([line for line in out.out.splitlines() if line.startswith("{")]) == SPANS
    assert "connection 'greptime' (greptime) failed to write" in out.err
    lines = (tmp_path / "spans.jsonl").read_text().splitlines()
    assert len(lines) == SPANS and json.loads(lines[0])["resource"]["service.name"] == "shop"
    assert sorted(received_span_names(collector)).count("service:orders.load") == SPANS // 2


def test_dead_otlp_collector_while_greptime_writes(tmp_path: Path, influxd: Influx) -> None:
    influxd.create_database("public")
    dead_collector = f"http://127.0.0.1:{free_port()}/v1/traces"
    infratrace.configure(dual_write_config(tmp_path, dead_collector, influxd.url, "5s"))
    slowest = serve_requests(SPANS // 2)
    assert slowest < 0.05, f"a request took {slowest * 1000:.1f} ms to end its spans"
    assert infratrace.force_flush(15)
    stats = infratrace.stats()
    otlp = assert_accounted(stats, "otlp", SPANS)
    assert otlp["dropped_count"] == SPANS and otlp["written_count"] == 0
    for name in ("console", "file", "greptime"):
        connection = assert_accounted(stats, name, SPANS)
        assert connection["written_count"] == SPANS, (name, connection)
    rows = influxd.rows("public", "traces")
    assert len(rows) == SPANS
    assert {row["service_name"] for row in rows} == {"shop", "orders"}
    assert all(len(row["tid"]) == 32 and len(row["sid"]) == 16 for row in rows)
