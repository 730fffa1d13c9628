"""Compact UTF-8 JSON for every output, from msgspec: chosen by measurement over orjson
because it encodes the stable schema's records as structs (field names encoded once,
not per line; docs/benchmarks.md).

Span values reach it already made safe by :mod:`infratrace._spandata`; the ``enc_hook``
only sees what a caller outside the span path passes (sets, bytes, objects)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec

__all__ = ["Raw", "encode_json", "line_step"]

Raw = msgspec.Raw


def _enc_hook(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
_encode = _encoder.encode
_encode_lines = _encoder.encode_lines


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON; a value JSON cannot hold is written as its ``str()``. A lone
    surrogate, which is not UTF-8, is written as ``?`` (as ``safe_text`` does). Raises
    ``ValueError``/``RecursionError`` for what no JSON can be made of (a cycle, too deep
    a nesting): values made by the span snapshot are never such."""
    try:
        return _encode(value)
    except UnicodeEncodeError:
        return _escaped(value)


def line_step(record: Callable[[Any], Any]) -> Callable[[Any], bytes]:
    """A step that turns each input into ``record``'s result as one JSON line,
    followed by a newline (one call: it runs for every span a connection writes)."""

    def line(value: Any) -> bytes:
        made = record(value)
        try:
            return _encode_lines((made,))
        except UnicodeEncodeError:
            return _escaped(made) + b"\n"

    return line


def _escaped(value: Any) -> bytes:
    # The standard library writes lone surrogates instead of refusing them; the UTF-8
    # encoding then replaces each with "?".
    builtins = msgspec.to_builtins(value, enc_hook=_enc_hook, builtin_types=(msgspec.Raw,))
    text = json.dumps(builtins, separators=(",", ":"), ensure_ascii=False, default=_raw_text)
    return text.encode("utf-8", "replace")


def _raw_text(value: Any) -> Any:
    if isinstance(value, msgspec.Raw):
        return json.loads(bytes(value))
    return _enc_hook(value)
