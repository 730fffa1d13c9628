"""One span → one line: JSON (the connection's ``fields`` shape) or the ``format``
template. Shared by the console and file drivers.

Batches are encoded in chunks of ``CHUNK`` spans: one string per span held for a
whole batch, or one batch-sized buffer, means fresh memory (page faults) on every
batch, which costs more than the encoding itself; small chunks reuse the same memory."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from .._config import ConnectionConfig
from .._fields import CStableLines, LineFormat, PyStableLines, RecordShape, ResourceView, encode_json, stable_line_encoder
from .._span import Span

__all__ = ["CHUNK", "LineEncoder"]

CHUNK = 32


class LineEncoder:
    __slots__ = ("_config", "_shape", "_stable", "_template")

    def __init__(self, config: ConnectionConfig) -> None:
        self._config = config
        self._stable: tuple[ResourceView, PyStableLines | CStableLines] | None = None
        self._shape = RecordShape(config.fields, config.flag) if config.json and config.fields is not None else None
        self._template = None if config.json else LineFormat(config.format, config.flag)

    def _stable_encoder(self, resource: ResourceView) -> PyStableLines | CStableLines | None:
        """The stable schema's encoder (C when built), ``None`` for a ``fields`` or
        ``format`` shape."""
        if self._template is not None or self._shape is not None:
            return None
        if self._stable is None or self._stable[0] is not resource:
            self._stable = (resource, stable_line_encoder(resource, self._config.flag))
        return self._stable[1]

    def _line_function(self, resource: ResourceView) -> Callable[[Span], str]:
        if self._template is not None:
            template = self._template
            return lambda s: template(s, resource).replace("\n", "\\n")
        if self._shape is not None:
            shape = self._shape
            return lambda s: encode_json(shape(s, resource)).decode("utf-8")
        stable = self._stable_encoder(resource)
        assert stable is not None
        return stable.line

    def line(self, span: Span, resource: ResourceView) -> str:
        """One line, without its newline."""
        return self._line_function(resource)(span)

    def encode(self, spans: Iterable[Span], resource: ResourceView) -> bytes:
        """Every span's line, each followed by a newline, as UTF-8."""
        stable = self._stable_encoder(resource)
        if stable is not None:
            batch = spans if isinstance(spans, (list, tuple)) else list(spans)
            return stable.chunk(batch, 0, len(batch)) if batch else b""
        line = self._line_function(resource)
        text = "\n".join([line(s) for s in spans])
        return (text + "\n").encode("utf-8", "replace") if text else b""

    def chunks(self, spans: Sequence[Span], resource: ResourceView) -> Iterator[tuple[bytes, int]]:
        """``(bytes, line count)`` for every ``CHUNK`` spans of the batch."""
        stable = self._stable_encoder(resource)
        if stable is not None:
            total = len(spans)
            for start in range(0, total, CHUNK):
                stop = min(start + CHUNK, total)
                yield stable.chunk(spans, start, stop), stop - start
            return
        line = self._line_function(resource)
        for start in range(0, len(spans), CHUNK):
            part = spans[start : start + CHUNK]
            yield ("\n".join([line(s) for s in part]) + "\n").encode("utf-8", "replace"), len(part)
