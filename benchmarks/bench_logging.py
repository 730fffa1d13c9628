"""Cost of trace ids in log records: infratrace.logging vs OpenTelemetry's logging
instrumentation, per record, outside and inside a span.

    .venv/bin/python benchmarks/bench_logging.py [--records 200000] [--repeat 7]

Each scenario logs ``records`` INFO records through a logger whose handler formats them
into an in-memory stream. Scenarios:

- ``plain``: no instrumentation, a format without trace ids;
- ``infratrace``: ``infratrace.logging.instrument()``, the format with
  ``%(trace_id)s %(span_id)s %(trace_sampled)s``;
- ``otel``: ``opentelemetry-instrumentation-logging``'s ``LoggingInstrumentor`` with
  ``inject_trace_context=True`` and the OpenTelemetry SDK's tracer provider, the
  format with its ``otelTraceID``/``otelSpanID``/``otelTraceSampled``.

So each figure is what a user pays per record to have ids in the log line: the factory
plus formatting three more fields. Each runs outside any span and inside one. Rounds
are interleaved; the figure is the median over rounds of (scenario − plain) per record,
in nanoseconds.
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

FORMAT = "%(levelname)s %(name)s [%(trace_id)s %(span_id)s %(trace_sampled)s] %(message)s"
OTEL_FORMAT = "%(levelname)s %(name)s [%(otelTraceID)s %(otelSpanID)s %(otelTraceSampled)s] %(message)s"


PLAIN_FORMAT = "%(levelname)s %(name)s %(message)s"


def _logger(fmt: str) -> logging.Logger:
    logger = logging.getLogger(f"bench.{fmt}")
    logger.handlers.clear()
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter(fmt))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def _run(logger: logging.Logger, n: int, span: Callable[[], Any]) -> float:
    stream = logger.handlers[0].stream  # type: ignore[attr-defined]
    with span():
        start = time.perf_counter_ns()
        for i in range(n):
            logger.info("request %d done", i)
        elapsed = time.perf_counter_ns() - start
    stream.seek(0)
    stream.truncate()
    return elapsed / n


@contextmanager
def _infratrace() -> Iterator[tuple[logging.Logger, Callable[[], Any]]]:
    import infratrace
    import infratrace.logging as it_logging

    infratrace.configure({"trace": {"driver": "discard"}})
    it_logging.instrument()
    try:
        yield _logger(FORMAT), lambda: infratrace.begin("bench")
    finally:
        it_logging.uninstrument()


@contextmanager
def _otel() -> Iterator[tuple[logging.Logger, Callable[[], Any]]]:
    from opentelemetry.instrumentation.logging import LoggingInstrumentor
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    tracer = provider.get_tracer("bench")
    instrumentor = LoggingInstrumentor()
    instrumentor.instrument(tracer_provider=provider, set_logging_format=False, inject_trace_context=True)
    try:
        yield _logger(OTEL_FORMAT), lambda: tracer.start_as_current_span("bench")
    finally:
        instrumentor.uninstrument()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    n = args.records
    plain = _logger(PLAIN_FORMAT)
    results: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        base = _run(plain, n, nullcontext)
        for name, setup in (("infratrace", _infratrace), ("otel", _otel)):
            with setup() as (logger, span):
                for where, ctx in (("outside a span", nullcontext), ("inside a span", span)):
                    results.setdefault(f"{name} {where}", []).append(_run(logger, n, ctx) - base)
        results.setdefault("plain (absolute)", []).append(base)
    print(f"{'scenario':<32} {'ns per record (median)':>24}")
    for name, values in results.items():
        print(f"{name:<32} {statistics.median(values):>24.0f}")
    for where in ("outside a span", "inside a span"):
        ours = statistics.median(results[f"infratrace {where}"])
        theirs = statistics.median(results[f"otel {where}"])
        print(f"infratrace ÷ otel, {where}: {ours / theirs:.2f}" if theirs > 0 else f"otel adds nothing {where}")


if __name__ == "__main__":
    main()
