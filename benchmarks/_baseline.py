"""The baseline every benchmark compares with: the OpenTelemetry SDK as its users run it
— ``TracerProvider`` + ``BatchSpanProcessor`` — with an exporter that counts the spans
and discards them. The queue is large enough that a benchmark's tight loop never makes
the processor drop spans (dropping would make the baseline look cheaper than it is)."""

from __future__ import annotations

from collections.abc import Sequence
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
