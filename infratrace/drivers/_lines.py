"""One span → one line: JSON (the connection's ``fields`` shape) or the ``format``
template. Shared by the console and file drivers.

Batches are encoded in chunks of ``CHUNK`` spans: one string per span held for a
whole batch, or one batch-sized buffer, means fresh memory (page faults) on every
batch, which costs more than the encoding itself; small chunks reuse the same memory."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from .._config import ConnectionConfig
from .._fields import LineFormat, RecordShape, ResourceView, StableJSONLine, encode_json
from .._span import Span

__all__ = ["CHUNK", "LineEncoder"]

CHUNK = 32


class LineEncoder:
    __slots__ = ("_config", "_shape", "_stable", "_template")

    def __init__(self, config: ConnectionConfig) -> None:
        self._config = config
        self._stable: tuple[ResourceView, StableJSONLine] | None = None
        self._shape = RecordShape(config.fields, config.flag) if config.json and config.fields is not None else None
        self._template = None if config.json else LineFormat(config.format, config.flag)

    def _line_function(self, resource: ResourceView) -> Callable[[Span], str]:
        if self._template is not None:
            template = self._template
            return lambda s: template(s, resource).replace("\n", "\\n")
        if self._shape is not None:
            shape = self._shape
            return lambda s: encode_json(shape(s, resource)).decode("utf-8")
        if self._stable is None or self._stable[0] is not resource:
            self._stable = (resource, StableJSONLine(resource, self._config.flag))
        return self._stable[1]

    def line(self, span: Span, resource: ResourceView) -> str:
        """One line, without its newline."""
        return self._line_function(resource)(span)

    def encode(self, spans: Iterable[Span], resource: ResourceView) -> bytes:
        """Every span's line, each followed by a newline, as UTF-8."""
        line = self._line_function(resource)
        text = "\n".join([line(s) for s in spans])
        return (text + "\n").encode("utf-8", "replace") if text else b""

    def chunks(self, spans: Sequence[Span], resource: ResourceView) -> Iterator[tuple[bytes, int]]:
        """``(bytes, line count)`` for every ``CHUNK`` spans of the batch."""
        line = self._line_function(resource)
        for start in range(0, len(spans), CHUNK):
            part = spans[start : start + CHUNK]
            yield ("\n".join([line(s) for s in part]) + "\n").encode("utf-8", "replace"), len(part)
