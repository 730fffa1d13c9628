"""Cost of one nested span with 3 attributes: infratrace vs the OpenTelemetry SDK.

    .venv/bin/python benchmarks/bench_core.py [--spans 200000] [--repeat 5]

Every scenario runs the same loop in this process: a parent span, and inside it
``chunk`` child spans with 3 attributes, then a flush; the time per child span includes
the flush, so the background work (sampling, formatting, writing) is paid for in the
figure, not hidden in a thread. Scenarios:

- ``bare call``: the loop calling a plain function with the same 3 attributes;
- ``infratrace discard``: the pipeline running, the ``discard`` driver;
- ``infratrace file json``: the pipeline running, the ``file`` driver writing JSON lines;
- ``otel sdk``: TracerProvider + BatchSpanProcessor + an exporter that discards.

The ratio column is each scenario's time divided by the OpenTelemetry SDK's.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _baseline import DiscardExporter, otel_provider  # benchmarks/ is on sys.path when run as a script
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

CHUNK = 500
ATTRS = {"user.id": 1001, "route": "/users/{id}", "weight": 2.5}


def bare_loop(n: int) -> None:
    """The loop of the ``bare call`` scenario: a plain function, no span."""

    def work(name: str, attrs: dict[str, object]) -> None:
        pass

    for _ in range(n // CHUNK):
        for _ in range(CHUNK):
            work("service:user.load", ATTRS)


def bench_bare(n: int) -> float:
    start = time.perf_counter()
    bare_loop(n)
    return time.perf_counter() - start


def infratrace_config(driver: str, directory: Path) -> str:
    """The configuration of the ``infratrace discard`` / ``infratrace file json`` scenarios."""
    if driver == "discard":
        return '[trace]\ndriver = "discard"'
    return f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{directory}/spans.jsonl"'


def infratrace_loop(n: int) -> None:
    """``n // CHUNK`` times: a parent span, ``CHUNK`` child spans with 3 attributes, a flush."""
    import infratrace

    begin = infratrace.begin
    flush = infratrace.force_flush
    for _ in range(n // CHUNK):
        with begin("http:GET /users/{id}"):
            for _ in range(CHUNK):
                with begin("service:user.load", ATTRS):
                    pass
        flush()


def check_infratrace(stats: dict[str, Any], n: int) -> None:
    """Every connection wrote the ``n`` child spans and their parents (``n`` a multiple of CHUNK)."""
    for name, conn in stats["connections"].items():
        expected = n + n // CHUNK
        if conn["written_count"] != expected:
            raise SystemExit(f"infratrace {name}: wrote {conn['written_count']} of {expected} spans: {conn}")


def make_infratrace(config: str) -> Callable[[int], float]:
    import infratrace

    def run(n: int) -> float:
        infratrace.configure(config)
        start = time.perf_counter()
        infratrace_loop(n)
        elapsed = time.perf_counter() - start
        stats = infratrace.stats()
        infratrace.shutdown()
        check_infratrace(stats, n)
        return elapsed

    return run


def otel_sdk() -> tuple[TracerProvider, DiscardExporter]:
    """The ``otel sdk`` scenario's provider: a queue of 4 chunks, flushed every chunk."""
    return otel_provider(max_queue_size=4 * CHUNK)


def otel_loop(provider: TracerProvider, tracer: Tracer, n: int) -> None:
    """:func:`infratrace_loop` with the OpenTelemetry SDK's ``tracer``."""
    start_span = tracer.start_as_current_span
    for _ in range(n // CHUNK):
        with start_span("http:GET /users/{id}"):
            for _ in range(CHUNK):
                with start_span("service:user.load", attributes=ATTRS):
                    pass
        provider.force_flush()


def make_otel() -> Callable[[int], float]:
    def run(n: int) -> float:
        provider, exporter = otel_sdk()
        tracer = provider.get_tracer("bench")
        start = time.perf_counter()
        otel_loop(provider, tracer, n)
        elapsed = time.perf_counter() - start
        provider.shutdown()
        if exporter.count != n + n // CHUNK:
            raise SystemExit(f"otel exported {exporter.count} of {n + n // CHUNK} spans")
        return elapsed

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n = args.spans - args.spans % CHUNK
    tmp = Path(tempfile.mkdtemp(prefix="infratrace-bench-"))
    scenarios: dict[str, Callable[[int], float]] = {
        "bare call": bench_bare,
        "infratrace discard": make_infratrace(infratrace_config("discard", tmp)),
        "infratrace file json": make_infratrace(infratrace_config("file", tmp)),
        "otel sdk": make_otel(),
    }
    results: dict[str, list[float]] = {name: [] for name in scenarios}
    for _ in range(args.repeat):  # interleaved, so drift hits every scenario alike
        for name, run in scenarios.items():
            gc.collect()
            results[name].append(run(n) / n * 1e9)
            (tmp / "spans.jsonl").unlink(missing_ok=True)
    otel = statistics.median(results["otel sdk"])
    print(f"python {sys.version.split()[0]}, {n} child spans x {args.repeat} runs, chunk {CHUNK}\n")
    print("| scenario | ns per span (median) | min | ratio to OTel SDK |")
    print("| --- | ---: | ---: | ---: |")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"| {name} | {median:,.0f} | {min(values):,.0f} | {median / otel:.3f} |")


if __name__ == "__main__":
    main()
