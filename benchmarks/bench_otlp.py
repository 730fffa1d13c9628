"""CPU cost per span of exporting over OTLP/HTTP: infratrace's ``otlp`` driver vs the
OpenTelemetry SDK's ``BatchSpanProcessor`` + ``OTLPSpanExporter``.

    .venv/bin/python benchmarks/bench_otlp.py [--spans 100000] [--rounds 5] [--core]

Each side sends to its own receiver on 127.0.0.1 (a free port, HTTP/1.1 keep-alive,
every POST answered 200 with an empty body and discarded), each receiver in a separate
process so its CPU time is not counted. The traced loop is that of bench_core.py: a
parent span with ``CHUNK`` (500) child spans of 3 attributes, then the tracer's flush,
repeated until ``--spans`` children are done, so every span is encoded and posted
inside the timed region (one request per chunk on both sides) and no queue overflows.
Scenarios:

- ``bare call``: the same loop calling a plain function;
- ``infratrace otlp``: ``driver = "otlp"`` (protobuf, no compression);
- ``otel sdk otlp``: ``TracerProvider`` + ``BatchSpanProcessor`` (a queue large enough
  never to drop) + ``OTLPSpanExporter`` (opentelemetry-exporter-otlp-proto-http);
- with ``--core``, ``infratrace discard``: the same pipeline with ``driver = "discard"``,
  to show how much of the ``otlp`` figure is the core's.

Measured: the process's CPU time (``time.process_time``: every thread, so the
background encoding and the HTTP requests are included), per span (children and
parents), with the bare loop's time subtracted; rounds interleave the scenarios so
drift in machine load hits all of them. Reported: the median over rounds, the ratio
infratrace / OpenTelemetry, and the bytes each receiver got per span.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHUNK = 500
ATTRS = {"user.id": 1001, "route": "/users/{id}", "weight": 2.5}


# -- the receiver (run in its own process) ------------------------------------------
def serve() -> None:
    """Answer every POST with 200 and an empty body; ``GET /stats``: what was received."""
    received = {"requests": 0, "bytes": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length", "0"))
            received["requests"] += 1
            received["bytes"] += len(self.rfile.read(size))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            body = json.dumps(received).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


class Receiver:
    """A :func:`serve` process and its URL."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}/v1/traces"

    def received(self) -> dict[str, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=10) as resp:
            data: dict[str, int] = json.loads(resp.read())
            return data

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# -- the scenarios ---------------------------------------------------------------------
class Scenario:
    """``prepare()`` (not timed) then ``run(n)``: the loop, returning how many spans
    were exported."""

    def prepare(self) -> None:
        pass

    def run(self, n: int) -> int:
        raise NotImplementedError


class Bare(Scenario):
    def run(self, n: int) -> int:
        def work(name: str, attrs: dict[str, object]) -> None:
            pass

        for _ in range(n // CHUNK):
            work("http:GET /users/{id}", {})
            for _ in range(CHUNK):
                work("service:user.load", ATTRS)
        return n + n // CHUNK


class Infratrace(Scenario):
    def __init__(self, connection: str) -> None:
        self.config = f'[infratrace]\nservice = "bench"\n[trace]\n{connection}'
        self.written = 0

    configured = ""  # the configuration in place: configure() only when it changes

    def prepare(self) -> None:
        import infratrace

        if Infratrace.configured != self.config:
            infratrace.configure(self.config)
            Infratrace.configured = self.config
            self.written = 0

    def run(self, n: int) -> int:
        import infratrace

        begin = infratrace.begin
        flush = infratrace.force_flush
        for _ in range(n // CHUNK):
            with begin("http:GET /users/{id}", kind="server"):
                for _ in range(CHUNK):
                    with begin("service:user.load", ATTRS):
                        pass
            flush()
        (conn,) = infratrace.stats()["connections"].values()
        if conn["dropped_count"]:
            raise SystemExit(f"infratrace dropped spans: {conn}")
        written: int = conn["written_count"] - self.written
        self.written = conn["written_count"]
        return written


class OpenTelemetry(Scenario):
    def __init__(self, url: str) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

        class CountingExporter(OTLPSpanExporter):
            count = 0

            def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
                result = super().export(spans)
                if result is SpanExportResult.SUCCESS:
                    self.count += len(spans)
                return result

        self.exporter = CountingExporter(endpoint=url)
        self.provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter, max_queue_size=1 << 20, max_export_batch_size=512))
        self.tracer = self.provider.get_tracer("bench")

    def run(self, n: int) -> int:
        from opentelemetry.trace import SpanKind

        start_span = self.tracer.start_as_current_span
        force_flush = self.provider.force_flush
        before = self.exporter.count
        for _ in range(n // CHUNK):
            with start_span("http:GET /users/{id}", kind=SpanKind.SERVER):
                for _ in range(CHUNK):
                    with start_span("service:user.load", attributes=ATTRS):
                        pass
            force_flush()
        return self.exporter.count - before

    def close(self) -> None:
        self.provider.shutdown()


def cpu_per_span(scenario: Scenario, n: int) -> tuple[float, int]:
    """µs of process CPU time per span (``n`` children plus their parents), and how
    many spans the scenario exported."""
    scenario.prepare()
    gc.collect()
    start = time.process_time()
    exported = scenario.run(n)
    elapsed = time.process_time() - start
    return elapsed / (n + n // CHUNK) * 1e6, exported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=100_000, help="child spans per round and scenario")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--core", action="store_true", help='also run infratrace with driver = "discard"')
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            del os.environ[name]
    n = max(CHUNK, args.spans - args.spans % CHUNK)
    total = n + n // CHUNK
    ours, theirs = Receiver(), Receiver()
    otel = OpenTelemetry(theirs.url)
    scenarios: dict[str, Scenario] = {
        "bare call": Bare(),
        "infratrace otlp": Infratrace(f'driver = "otlp"\n[trace.setting]\nendpoint = "{ours.url}"'),
        "otel sdk otlp": otel,
    }
    if args.core:
        scenarios["infratrace discard"] = Infratrace('driver = "discard"')
    try:
        for scenario in scenarios.values():  # warm-up: imports, connections, caches
            scenario.prepare()
            scenario.run(CHUNK)
        warm = {"infratrace otlp": ours.received(), "otel sdk otlp": theirs.received()}
        results: dict[str, list[float]] = {name: [] for name in scenarios}
        for _ in range(args.rounds):  # interleaved, so drift in machine load hits every scenario alike
            for name, scenario in scenarios.items():
                per_span, exported = cpu_per_span(scenario, n)
                if exported != total:
                    raise SystemExit(f"{name}: exported {exported} of {total} spans")
                results[name].append(per_span)
        sizes = {}
        for name, receiver in (("infratrace otlp", ours), ("otel sdk otlp", theirs)):
            got = receiver.received()
            sizes[name] = (got["bytes"] - warm[name]["bytes"]) / (total * args.rounds)
    finally:
        import infratrace

        infratrace.shutdown()
        otel.close()
        ours.close()
        theirs.close()

    bare = results.pop("bare call")
    added = {name: [v - b for v, b in zip(values, bare, strict=True)] for name, values in results.items()}
    otel_median = statistics.median(added["otel sdk otlp"])
    print(
        f"python {sys.version.split()[0]}, {n} child spans + {n // CHUNK} parents x {args.rounds} rounds, "
        f"chunk {CHUNK}, process CPU time (all threads)\n"
    )
    print("| scenario | CPU µs per span (median, bare loop subtracted) | min | bytes per span | ratio to OTel |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(f"| bare call (subtracted from the rows below) | {statistics.median(bare):.3f} | {min(bare):.3f} | | |")
    for name, values in added.items():
        median = statistics.median(values)
        size = f"{sizes[name]:.0f}" if name in sizes else ""
        print(f"| {name} | {median:.2f} | {min(values):.2f} | {size} | {median / otel_median:.3f} |")
    paired = [a / b for a, b in zip(added["infratrace otlp"], added["otel sdk otlp"], strict=True)]
    print(
        f"\nratio infratrace otlp / OpenTelemetry: {statistics.median(added['infratrace otlp']) / otel_median:.3f}"
        f" (median of the per-round ratios: {statistics.median(paired):.3f})"
    )


if __name__ == "__main__":
    main()
