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

from _baseline import otel_provider  # benchmarks/ is on sys.path when run as a script

CHUNK = 500
ATTRS = {"user.id": 1001, "route": "/users/{id}", "weight": 2.5}


def bench_bare(n: int) -> float:
    def work(name: str, attrs: dict[str, object]) -> None:
        pass

    start = time.perf_counter()
    for _ in range(n // CHUNK):
        for _ in range(CHUNK):
            work("service:user.load", ATTRS)
    return time.perf_counter() - start


def make_infratrace(config: str) -> Callable[[int], float]:
    import infratrace

    def run(n: int) -> float:
        infratrace.configure(config)
        begin = infratrace.begin
        flush = infratrace.force_flush
        start = time.perf_counter()
        for _ in range(n // CHUNK):
            with begin("http:GET /users/{id}"):
                for _ in range(CHUNK):
                    with begin("service:user.load", ATTRS):
                        pass
            flush()
        elapsed = time.perf_counter() - start
        stats = infratrace.stats()
        infratrace.shutdown()
        for name, conn in stats["connections"].items():
            expected = n + n // CHUNK
            if conn["written_count"] != expected:
                raise SystemExit(f"infratrace {name}: wrote {conn['written_count']} of {expected} spans: {conn}")
        return elapsed

    return run


def make_otel() -> Callable[[int], float]:
    def run(n: int) -> float:
        provider, exporter = otel_provider(max_queue_size=4 * CHUNK)
        tracer = provider.get_tracer("bench")
        start_span = tracer.start_as_current_span
        start = time.perf_counter()
        for _ in range(n // CHUNK):
            with start_span("http:GET /users/{id}"):
                for _ in range(CHUNK):
                    with start_span("service:user.load", attributes=ATTRS):
                        pass
            provider.force_flush()
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
        "infratrace discard": make_infratrace('[trace]\ndriver = "discard"'),
        "infratrace file json": make_infratrace(
            f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{tmp}/spans.jsonl"'
        ),
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
