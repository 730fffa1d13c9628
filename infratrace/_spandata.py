"""The ended span as every driver reads it: one immutable :class:`SpanData` per span.

The pipeline's background thread turns each ended :class:`~infratrace.Span` into a
``SpanData`` exactly once (:func:`snapshot`), before sampling and before any driver sees
it; every connection reads the same record. Attribute values are made safe for every
output here, and only here (:func:`safe_attributes`): after the snapshot, a driver can
rely on each value being a ``str``, ``bool``, 64-bit ``int``, finite ``float`` or a
list of those.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from ._budget import count_of
from ._json import Raw, encode_json

if TYPE_CHECKING:
    from ._span import Span

__all__ = [
    "AttributeValue",
    "Event",
    "Resource",
    "SpanData",
    "safe_attributes",
    "safe_str",
    "safe_text",
    "safe_value",
    "snapshot",
]

AttributeValue = str | bool | int | float | list[Any]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

# Wall clock = monotonic clock + offset: spans read the monotonic clock only (one cheap
# call per timestamp) and the snapshot adds the offset, refreshed by the pipeline so a
# stepped system clock is followed.
_clock_offset_ns: int = time.time_ns() - time.perf_counter_ns()


def refresh_clock_offset() -> None:
    global _clock_offset_ns
    _clock_offset_ns = time.time_ns() - time.perf_counter_ns()


class Resource:
    """The process-wide resource (``[infratrace]`` plus the pid), shared by every span
    of a pipeline; rebuilt after a fork."""

    __slots__ = ("attributes", "instance", "json", "node", "pid", "profile", "project", "role", "service_name")

    def __init__(self, attributes: Mapping[str, Any]) -> None:
        self.attributes: dict[str, Any] = safe_attributes(dict(attributes))
        self.service_name = str(attributes.get("service.name", ""))
        self.project = str(attributes.get("project", ""))
        self.profile = str(attributes.get("profile", ""))
        self.role = str(attributes.get("role", ""))
        self.node = str(attributes.get("node", ""))
        self.pid = int(attributes.get("process.pid", os.getpid()))
        self.instance = f"{self.node}:{self.pid}"
        # Serialised once: every JSON line embeds the same resource.
        self.json = Raw(encode_json(self.attributes))

    def __repr__(self) -> str:
        return f"Resource({self.attributes!r})"


class Event(NamedTuple):
    """A timestamped event on a span (``exception`` events come from ``record_exception``)."""

    name: str
    time_unix_nano: int
    attributes: dict[str, AttributeValue]


class SpanData(NamedTuple):
    """An ended span, immutable: what drivers, samplers and output steps read.

    Ids are lowercase hex (``parent_span_id`` is ``""`` for a root); times are Unix
    nanoseconds; ``status`` is ``"ok"`` or ``"error"``."""

    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    trace_flags: int
    tracestate: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    status: str
    status_code: int
    status_message: str
    attributes: dict[str, AttributeValue]
    events: tuple[Event, ...]
    resource: Resource

    @property
    def duration_ns(self) -> int:
        return self.end_time_unix_nano - self.start_time_unix_nano

    @property
    def service_name(self) -> str:
        """The span's ``service`` attribute, else the resource's ``service.name``."""
        service = self.attributes.get("service")
        if service is None or service == "":
            return self.resource.service_name
        return service if service.__class__ is str else safe_str(service)


_new = tuple.__new__
_NO_EVENTS: tuple[Event, ...] = ()


_last_trace: tuple[int, str] = (0, "")


def snapshot(span: Span, resource: Resource) -> SpanData:
    """The immutable record of an ended span (made once per span, where it ends)."""
    global _last_trace
    offset = _clock_offset_ns
    status = span._status
    ctx = span._ctx
    pid = span._pid
    events = span._events
    name = span.name
    last = _last_trace
    if last[0] != span._tid:  # a trace's spans mostly end one after another
        last = _last_trace = (span._tid, span._tid.to_bytes(16, "big").hex())
    return _new(
        SpanData,
        (
            name if name.__class__ is str and name.isascii() else safe_str(name),
            span.kind,
            last[1],
            span._sid.to_bytes(8, "big").hex(),
            pid.to_bytes(8, "big").hex() if pid else "",
            ctx.flags,
            ctx.tracestate,
            span._t0 + offset,
            span._t1 + offset,
            "ok" if status is None else status[0],
            0 if status is None else status[1],
            "" if status is None else status[2],
            safe_attributes(span.attributes),
            _NO_EVENTS if not events else tuple(_event(e) for e in events),
            resource,
        ),
    )


def _event(event: tuple[str, int, dict[str, Any]]) -> Event:
    name, ts, attributes = event
    return Event(safe_str(name), ts + _clock_offset_ns, safe_attributes(attributes))


# -- attribute values ----------------------------------------------------------------
# [limits] (infratrace._config.Limits), set by the tracer at configure().
_max_attributes = 128
_max_length = 8192
_max_items = 1000
_truncated = itertools.count()  # values cut and attributes dropped by the limits; next() is atomic


def set_limits(attributes: int, value_length: int, list_items: int) -> None:
    global _max_attributes, _max_length, _max_items
    _max_attributes, _max_length, _max_items = attributes, value_length, list_items


def truncated_total() -> int:
    """How many attribute values the limits have cut or dropped in this process."""
    return count_of(_truncated)


def safe_attributes(attributes: Any) -> dict[str, AttributeValue]:
    """``attributes`` with every key a ``str`` and every value one every output can
    hold (see :func:`safe_value`), within the limits: at most ``[limits] attributes``
    of them (the first ones), text values and keys cut at ``value_length`` characters,
    lists at ``list_items`` items; each cut counted. The span's own dict is returned as
    it is when nothing needs converting (the common case: the span has ended, nothing
    writes it). Text is not checked for lone surrogates here (that would cost every
    span): each encoder writes one as ``?``."""
    try:
        if len(attributes) <= _max_attributes:
            limit = _max_length
            for key, value in attributes.items():
                cls = value.__class__
                if key.__class__ is not str or len(key) > limit:
                    break
                if cls is str:
                    if len(value) > limit:
                        break
                elif cls is int:  # _plain_number, inlined: this loop runs for every span
                    if not _INT64_MIN <= value <= _INT64_MAX:
                        break
                elif cls is float:
                    if value - value != 0.0:  # inf - inf and nan - nan are nan: not finite
                        break
                elif cls is not bool:
                    break
            else:
                return attributes  # type: ignore[no-any-return]
        return _bounded_attributes(list(attributes.items()))
    except Exception:  # e.g. a dict subclass whose items() raises: keep nothing rather than fail
        return {}


def _bounded_attributes(items: list[tuple[Any, Any]]) -> dict[str, AttributeValue]:
    cut = 0
    if len(items) > _max_attributes:
        cut += len(items) - _max_attributes
        del items[_max_attributes:]
    limit = _max_length
    safe: dict[str, AttributeValue] = {}
    for key, value in items:
        try:
            converted = safe_value(value)
        except Exception:  # a value no rule foresaw: it alone becomes a placeholder
            converted = f"<unprintable {type(value).__name__}>"
        if converted is None:
            continue
        name = key if key.__class__ is str else safe_str(key)
        if len(name) > limit:
            name, cut = name[:limit], cut + 1
        if converted.__class__ is str:
            if len(converted) > limit:
                converted, cut = converted[:limit], cut + 1
        elif converted.__class__ is list:
            listed: list[Any] = converted
            if len(listed) > _max_items:
                listed, cut = listed[:_max_items], cut + 1
            if any(item.__class__ is str and len(item) > limit for item in listed):
                listed, cut = [item[:limit] if item.__class__ is str else item for item in listed], cut + 1
            converted = listed
        safe[name] = converted
    for _ in range(cut):
        next(_truncated)
    return safe


def _plain_number(value: Any, cls: type) -> bool:
    if cls is int:
        return _INT64_MIN <= value <= _INT64_MAX  # type: ignore[no-any-return]
    if cls is float:
        return math.isfinite(value)
    return False


def safe_value(value: Any) -> AttributeValue | None:
    """One attribute value as outputs accept it: ``str``, ``bool``, 64-bit ``int``,
    finite ``float``, or a flat list of those. ``None`` is dropped; an int beyond 64
    bits, a non-finite float, ``bytes`` (decoded as UTF-8 with replacement) and any
    other object become text; a mapping becomes JSON text; a nested list or a mapping
    inside a list becomes text."""
    cls = value.__class__
    if cls is str:
        return safe_text(value)
    if cls is bool:
        return value  # type: ignore[no-any-return]
    if value is None:
        return None
    if cls is int or cls is float:
        return value if _plain_number(value, cls) else safe_str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=safe_str) if isinstance(value, (set, frozenset)) else value
        if len(items) > _max_items:  # cut before converting: a huge list costs no more than the limit
            items = items[:_max_items]
            next(_truncated)
        return [_scalar(item) for item in items]
    if isinstance(value, Mapping):
        return _json_text(value)
    return _scalar(value)


def _json_text(value: Mapping[Any, Any]) -> str:
    """A mapping as JSON text (a cyclic or too deeply nested one as its ``str()``)."""
    try:
        return encode_json(value).decode("utf-8")
    except Exception:
        return safe_str(value)


def _scalar(value: Any) -> str | bool | int | float:
    """An item of a list attribute: a scalar as :func:`safe_value` makes it, or text."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return safe_text(str.__str__(value))
    if isinstance(value, int):
        return int(value) if _INT64_MIN <= value <= _INT64_MAX else safe_str(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else safe_str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return safe_str(value)


def safe_str(value: object) -> str:
    """``str(value)`` as text every output can hold (see :func:`safe_text`), or a
    placeholder naming its type when ``__str__`` fails (or recurses, or runs out of
    memory): a bad value never costs the span."""
    try:
        text = str(value)
        return safe_text(text if text.__class__ is str else str.__str__(text))
    except Exception:  # RecursionError, MemoryError, ValueError (huge ints), whatever a hostile __str__ raises
        return f"<unprintable {type(value).__name__}>"


def safe_text(text: str) -> str:
    """``text`` as valid UTF-8: a lone surrogate (which no encoder can write) becomes
    ``?``."""
    if text.isascii() or _encodes(text):
        return text
    return text.encode("utf-8", "replace").decode("utf-8")


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
