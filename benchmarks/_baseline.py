"""The baseline every benchmark compares with, and the per-request scenario harness of
the web benchmarks. The baseline: the OpenTelemetry SDK as its users run it
— ``TracerProvider`` + ``BatchSpanProcessor`` — with an exporter that counts the spans
and discards them. The queue is large enough that a benchmark's tight loop never makes
the processor drop spans (dropping would make the baseline look cheaper than it is)."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class DiscardExporter(SpanExporter):
    """Counts what it is given (so a benchmark can check nothing was lost) and drops it."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


def otel_provider(max_queue_size: int = 1 << 20) -> tuple[TracerProvider, DiscardExporter]:
    exporter = DiscardExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=max_queue_size, max_export_batch_size=512))
    return provider, exporter


class Scenario:
    """One way of serving the benchmark app (bare, OpenTelemetry, infratrace): ``run``
    times ``n`` requests driven by ``drive(app, n)`` plus the tracer's flush, in wall
    and process CPU time (µs per request)."""

    def __init__(self, name: str, app: Any, flush: Callable[[], Any], spans_per_request: int) -> None:
        self.name = name
        self.app = app
        self.flush = flush
        self.spans_per_request = spans_per_request
        self.samples: list[float] = []
        self.cpu_samples: list[float] = []
        self.exported: Callable[[], int] = lambda: 0

    def run(self, drive: Callable[[Any, int], None], n: int) -> None:
        gc.collect()
        start, cpu_start = time.perf_counter(), time.process_time()
        drive(self.app, n)
        self.flush()
        self.samples.append((time.perf_counter() - start) / n * 1e6)
        self.cpu_samples.append((time.process_time() - cpu_start) / n * 1e6)


def paired_ratio(bare: Sequence[float], otel: Sequence[float], traced: Sequence[float]) -> str:
    """The target's ratio computed round by round — ``(traced − bare) / (otel − bare)``
    from the three scenarios measured back to back in the same round — then the median
    over rounds, with the quartiles. A change in the machine's speed between rounds
    (frequent on a shared VM) shifts all three of a round alike and cancels out here,
    where the ratio of medians mixes rounds measured at different speeds."""
    ratios = [(t - b) / (o - b) for b, o, t in zip(bare, otel, traced, strict=True) if o > b]
    if len(ratios) < 2:
        return "n/a (fewer than 2 rounds)"
    low, _, high = statistics.quantiles(ratios, n=4)
    return f"{statistics.median(ratios):.3f} (quartiles {low:.3f}–{high:.3f}, {len(ratios)} rounds)"
