"""Batches of spans → newline-terminated UTF-8 lines, through the connection's output
chain (:func:`infratrace._fields.line_encoder`). Shared by the console and file drivers.

Batches are encoded in chunks of ``CHUNK`` spans: one string per span held for a
whole batch, or one batch-sized buffer, means fresh memory (page faults) on every
batch, which costs more than the encoding itself; small chunks reuse the same memory."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .._config import ConnectionConfig
from .._fields import line_encoder
from .._spandata import SpanData

__all__ = ["CHUNK", "LineEncoder"]

CHUNK = 32


class LineEncoder:
    __slots__ = ("line",)

    def __init__(self, config: ConnectionConfig) -> None:
        self.line = line_encoder(config)

    def encode(self, spans: Sequence[SpanData]) -> bytes:
        """Every span's line, each followed by a newline, as UTF-8."""
        if not spans:
            return b""
        line = self.line
        return ("\n".join([line(s) for s in spans]) + "\n").encode("utf-8", "replace")

    def chunks(self, spans: Sequence[SpanData]) -> Iterator[tuple[bytes, int]]:
        """``(bytes, line count)`` for every ``CHUNK`` spans of the batch."""
        for start in range(0, len(spans), CHUNK):
            part = spans[start : start + CHUNK]
            yield self.encode(part), len(part)
