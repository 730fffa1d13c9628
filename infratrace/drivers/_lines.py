"""One span → one line: JSON (the connection's ``fields`` shape) or the ``format``
template. Shared by the console and file drivers.

Lines are appended to one reusable ``bytearray`` per batch rather than kept as a list
of ``bytes``: holding hundreds of ~600-byte objects alive defeats the allocator's
reuse and costs more than the encoding itself."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .._config import ConnectionConfig
from .._fields import LineFormat, RecordShape, ResourceView, encode_json, span_record
from .._span import Span

__all__ = ["LineEncoder"]


class LineEncoder:
    __slots__ = ("_encode",)

    def __init__(self, config: ConnectionConfig) -> None:
        self._encode: Callable[[Span, ResourceView], bytes]
        if config.json and config.fields is None:
            flag = config.flag

            def encode(s: Span, r: ResourceView) -> bytes:
                record = span_record(s, r, flag)
                record["resource"] = r.json
                return encode_json(record)

            self._encode = encode
        elif config.json:
            shape = RecordShape(config.fields, config.flag)
            self._encode = lambda s, r: encode_json(shape(s, r))
        else:
            template = LineFormat(config.format, config.flag)
            self._encode = lambda s, r: template(s, r).replace("\n", "\\n").encode("utf-8", "replace")

    def __call__(self, span: Span, resource: ResourceView) -> bytes:
        """One line, without its newline."""
        return self._encode(span, resource)

    def encode_into(self, buffer: bytearray, spans: Iterable[Span], resource: ResourceView) -> int:
        """Append each span's line and a newline to ``buffer``; returns the count."""
        encode = self._encode
        count = 0
        for span in spans:
            buffer += encode(span, resource)
            buffer += b"\n"
            count += 1
        return count
