"""Compact UTF-8 JSON for every output, from msgspec: chosen by measurement over orjson
because it encodes the stable schema's records as structs (field names encoded once,
not per line) and a whole chunk of lines in one call (docs/benchmarks.md).

Span values reach it already made safe by :mod:`infratrace._spandata`; the ``enc_hook``
only sees what a caller outside the span path passes (sets, bytes, objects)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec

__all__ = ["Raw", "encode_json", "encode_lines"]

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


def encode_lines(values: Sequence[Any]) -> bytes:
    """Each value as one JSON line, each followed by a newline, in one call."""
    try:
        return _encode_lines(values)
    except UnicodeEncodeError:
        return b"".join([encode_json(value) + b"\n" for value in values])


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
