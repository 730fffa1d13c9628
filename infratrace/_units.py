"""Parsing of Go-style durations ("200ms", "1m30s", "7d") and sizes ("100MB")."""

from __future__ import annotations

import re

__all__ = ["parse_duration", "parse_size"]

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d|w)")
_SIZE = re.compile(r"(\d+(?:\.\d*)?)\s*([kmgt]?i?b?)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}

MAX_DURATION = 366 * 86400.0  # a year: finite, and far below what thread waits accept
DURATION_HELP = 'a duration such as "200ms", "5s", "1m30s", "7d" or a number of seconds, at most 366 days'
SIZE_HELP = 'a size such as "100MB", "512KB", "1GB" or a number of bytes'


def parse_duration(value: object) -> float:
    """Return ``value`` in seconds; raise ``ValueError`` when it is not a duration.

    Accepts a non-negative number (seconds) or a Go-style string made of
    number+unit parts (``ns us ms s m h d w``), e.g. ``"1h30m"``.
    """
    seconds = _seconds(value)
    if not 0.0 <= seconds <= MAX_DURATION:  # also refuses NaN
        raise ValueError(DURATION_HELP)
    return seconds


def _seconds(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(DURATION_HELP)
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # an int beyond a float
            raise ValueError(DURATION_HELP) from None
    if not isinstance(value, str):
        raise ValueError(DURATION_HELP)
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    total = 0.0
    pos = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(DURATION_HELP)
    return total


def parse_size(value: object) -> int:
    """Return ``value`` in bytes; raise ``ValueError`` when it is not a size.

    Units are binary (``1KB`` = 1024 bytes), case-insensitive, ``B``/``iB`` optional.
    """
    if isinstance(value, bool):
        raise ValueError(SIZE_HELP)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(SIZE_HELP)
        return value
    if not isinstance(value, str):
        raise ValueError(SIZE_HELP)
    match = _SIZE.fullmatch(value.strip())
    if not match:
        raise ValueError(SIZE_HELP)
    unit = match.group(2).lower().replace("i", "")
    prefix = unit[:1] if unit not in ("", "b") else ""
    return int(float(match.group(1)) * _SIZE_UNITS[prefix])
