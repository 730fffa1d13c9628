"""Compact UTF-8 JSON for every output: orjson (measured the fastest for span records,
docs/benchmarks.md), with the standard library as the fallback where orjson has no
wheel. Values reach it already made safe by :mod:`infratrace._spandata`, so the
fallback ``default`` only sees what a caller outside the span path passes."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["encode_json", "json_fragment"]

_orjson: Any
try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised only without the dependency
    _orjson = None


def _default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _stdlib(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_default, skipkeys=True).encode(
        "utf-8", "replace"
    )


if _orjson is not None:
    _dumps = _orjson.dumps
    _Fragment = getattr(_orjson, "Fragment", None)

    def encode_json(value: Any) -> bytes:
        """Compact UTF-8 JSON; a value JSON cannot hold is written as its ``str()``."""
        try:
            return _dumps(value, default=_default)  # type: ignore[no-any-return]
        except TypeError:  # an int beyond 64 bits, a non-str key, too deep: the stdlib copes or says why
            return _stdlib(value)

else:  # pragma: no cover
    _Fragment = None
    encode_json = _stdlib


def json_fragment(encoded: bytes) -> Any:
    """Already-encoded JSON that :func:`encode_json` embeds as it is (parsed again only
    without orjson)."""
    return _Fragment(encoded) if _Fragment is not None else json.loads(encoded)
