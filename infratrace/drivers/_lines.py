"""Batches of spans → newline-terminated UTF-8 lines, through the connection's output
chain (:func:`infratrace._fields.lines_encoder`). Shared by the console and file drivers.

Batches are encoded in chunks of ``CHUNK`` spans: one batch-sized buffer means fresh
memory (page faults) on every batch, which costs more than the encoding itself; small
chunks reuse the same memory."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .._config import ConnectionConfig
from .._fields import lines_encoder
from .._spandata import SpanData

__all__ = ["CHUNK", "LineEncoder"]

CHUNK = 32


class LineEncoder:
    __slots__ = ("encode",)

    def __init__(self, config: ConnectionConfig) -> None:
        self.encode = lines_encoder(config)

    def chunks(self, spans: Sequence[SpanData]) -> Iterator[tuple[bytes, int]]:
        """``(bytes, line count)`` for every ``CHUNK`` spans of the batch."""
        encode = self.encode
        for start in range(0, len(spans), CHUNK):
            part = spans[start : start + CHUNK]
            yield encode(part), len(part)
