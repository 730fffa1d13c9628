"""Microseconds added per task publish and per task execution by the Celery adapter:
infratrace vs OpenTelemetry.

    .venv/bin/python benchmarks/bench_celery.py [--tasks 2000] [--rounds 7]

One Celery app with an in-memory broker (``memory://``, so the publish is kombu's
real code path without a network) and one task. Per round, in this order for each
scenario (so drift in machine load hits all of them), in blocks of 250 tasks:

- ``publish``: ``task.apply_async((1, 2))`` N times (``before_task_publish`` /
  ``after_task_publish`` — 1 producer span each);
- ``execute``: ``task.apply((1, 2))`` N times — an eager run goes through the same
  ``build_tracer`` code path as a worker and sends ``task_prerun``/``task_postrun``
  (1 consumer span each).

Scenarios: ``bare`` (no instrumentation), ``otel`` (``CeleryInstrumentor`` from
opentelemetry-instrumentation-celery, SDK ``TracerProvider`` + ``BatchSpanProcessor``
with an exporter that discards), ``infratrace`` (``infratrace_celery.instrument`` with
the ``file`` driver writing JSON lines to a temp file). Each timed block ends with the
tracer's flush, so the background work is in the figure. Reported: the median over
rounds of µs per task, and the added cost = scenario − bare.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import infratrace_celery
from celery import Celery
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import infratrace

app = Celery("bench", broker="memory://", set_as_current=False)
app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True)


@app.task(name="bench.add")
def add(x: int, y: int) -> int:
    return x + y


class DiscardExporter(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class Scenario:
    def __init__(self, name: str, on: Callable[[], None], off: Callable[[], None], flush: Callable[[], None]) -> None:
        self.name, self.on, self.off, self.flush = name, on, off, flush


def scenarios(tmp: Path) -> list[Scenario]:
    provider = TracerProvider()
    processor = BatchSpanProcessor(DiscardExporter(), max_queue_size=1 << 16, max_export_batch_size=512)
    provider.add_span_processor(processor)
    otel = CeleryInstrumentor()

    def otel_on() -> None:
        otel.instrument(tracer_provider=provider)

    def infratrace_on() -> None:
        infratrace.configure(
            f'[trace]\ndriver = "file"\njson = true\nbuffer = 65536\n[trace.setting]\noutput = "{tmp}/spans.jsonl"\n'
        )
        infratrace_celery.instrument(app)

    def nothing() -> None:
        pass

    def otel_flush() -> None:
        processor.force_flush()

    def infratrace_flush() -> None:
        infratrace.force_flush()

    return [
        Scenario("bare", nothing, nothing, nothing),
        Scenario("otel", otel_on, otel.uninstrument, otel_flush),
        Scenario("infratrace", infratrace_on, infratrace_celery.uninstrument, infratrace_flush),
    ]


CHUNK = 250


def purge() -> None:
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")


def timed(block: Callable[[int], None], flush: Callable[[], None], count: int) -> float:
    """µs per task. The in-memory broker keeps every message in this process, which
    would make the garbage collector's passes (and so the figure) grow with the queue:
    it is emptied, untimed, every CHUNK tasks, as a worker would consume them."""
    elapsed = 0.0
    done = 0
    while done < count:
        size = min(CHUNK, count - done)
        purge()
        gc.collect()
        start = time.perf_counter()
        block(size)
        flush()
        elapsed += time.perf_counter() - start
        done += size
    purge()
    return elapsed / count * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    n = args.tasks

    def publish(size: int) -> None:
        for _ in range(size):
            add.apply_async((1, 2))

    def execute(size: int) -> None:
        for _ in range(size):
            add.apply((1, 2))

    with tempfile.TemporaryDirectory() as tmp:
        cases = scenarios(Path(tmp))
        results: dict[tuple[str, str], list[float]] = {}
        for case in cases:  # warm up every code path once
            case.on()
            publish(CHUNK)
            execute(CHUNK)
            case.flush()
            purge()
            case.off()
        for _ in range(args.rounds):
            for case in cases:
                case.on()
                results.setdefault(("publish", case.name), []).append(timed(publish, case.flush, n))
                results.setdefault(("execute", case.name), []).append(timed(execute, case.flush, n))
                case.off()
        written = len((Path(tmp) / "spans.jsonl").read_text().splitlines())

    print(f"python {sys.version.split()[0]}, celery {__import__('celery').__version__}, "
          f"{n} tasks x {args.rounds} rounds, median µs per task")  # fmt: skip
    print(f"{'':10} {'bare':>8} {'otel':>8} {'infratrace':>11} {'otel added':>11} {'ours added':>11} {'ratio':>6}")
    for what in ("publish", "execute"):
        med = {name: statistics.median(results[(what, name)]) for name in ("bare", "otel", "infratrace")}
        otel_added = med["otel"] - med["bare"]
        ours_added = med["infratrace"] - med["bare"]
        ratio = ours_added / otel_added if otel_added > 0 else float("nan")
        print(f"{what:10} {med['bare']:8.2f} {med['otel']:8.2f} {med['infratrace']:11.2f} "
              f"{otel_added:11.2f} {ours_added:11.2f} {ratio:6.2f}")  # fmt: skip
    print(f"infratrace spans written to the file: {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
