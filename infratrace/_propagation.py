"""W3C Trace Context and Baggage: ``traceparent`` / ``tracestate`` / ``baggage`` into
and out of header carriers.

https://www.w3.org/TR/trace-context/ — an invalid ``traceparent`` is ignored (a new
trace starts); an invalid ``tracestate`` is dropped while the ``traceparent`` is kept.
Which of the two formats travel is the configuration's ``propagators`` (from
``OTEL_PROPAGATORS`` / ``INFRATRACE_PROPAGATORS``; both by default): see
:func:`set_propagators`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from . import baggage as _baggage
from ._span import NonRecordingSpan, Span, SpanContext, current_span

__all__ = [
    "PROPAGATORS",
    "extract",
    "extract_baggage",
    "format_traceparent",
    "inject",
    "outgoing_baggage",
    "outgoing_traceparent",
    "parse_traceparent",
    "propagators",
    "remote_baggage",
    "remote_parent",
    "set_propagators",
]

PROPAGATORS = ("tracecontext", "baggage")
_tracecontext = True
_baggage_on = True


def set_propagators(names: tuple[str, ...]) -> None:
    """Which formats :func:`extract`/:func:`inject` and the adapters read and write:
    ``tracecontext`` (``traceparent``/``tracestate``) and/or ``baggage``."""
    global _tracecontext, _baggage_on
    _tracecontext = "tracecontext" in names
    _baggage_on = "baggage" in names


def propagators() -> tuple[str, ...]:
    """The formats that travel: a subset of :data:`PROPAGATORS`."""
    return tuple(name for name, on in zip(PROPAGATORS, (_tracecontext, _baggage_on), strict=True) if on)


_TRACESTATE_MEMBER = re.compile(
    r"[a-z0-9][a-z0-9_\-*/]{0,255}(@[a-z][a-z0-9_\-*/]{0,13})?=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)
MAX_TRACESTATE_MEMBERS = 32


_TRACEPARENT_HEAD = re.compile(r"(?!ff)[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_MASK64 = (1 << 64) - 1


def parse_traceparent(value: str, tracestate: str = "") -> SpanContext | None:
    """Parse one ``traceparent`` value (and its ``tracestate``); ``None`` when it is not
    valid: ``<version>-<32 hex trace id>-<16 hex span id>-<2 hex flags>``, lowercase,
    ids not all zeros, version not ``ff``; a version above ``00`` may append
    ``-<more>``. It runs on every incoming request, so the three numbers are read with
    one ``int()`` of the 52 hex digits and split with shifts."""
    value = value.strip()
    if len(value) != 55 and (len(value) < 56 or value[55] != "-" or value[:2] == "00" or "\n" in value):
        return None
    head = value[:55]
    if _TRACEPARENT_HEAD.fullmatch(head) is None:
        return None
    number = int(head[3:].replace("-", ""), 16)
    trace_id = number >> 72
    span_id = (number >> 8) & _MASK64
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, number & 0xFF, _clean_tracestate(tracestate) if tracestate else "")


def remote_parent(traceparent: str | None, tracestate: str | None = None) -> SpanContext | None:
    """The caller's context from an incoming message's raw ``traceparent`` and
    ``tracestate`` values, as an adapter reads them: ``None`` when there is none, it is
    malformed, or ``tracecontext`` propagation is off. Never raises."""
    if not traceparent or not _tracecontext:
        return None
    try:
        return parse_traceparent(traceparent, tracestate or "")
    except Exception:
        return None


def remote_baggage(header: str | None) -> dict[str, str]:
    """The entries of an incoming message's raw ``baggage`` value (``{}`` when there is
    none, or ``baggage`` propagation is off); hand them to
    :func:`infratrace.baggage.attach` for the request's context. Never raises."""
    if not header or not _baggage_on:
        return {}
    return _baggage.parse_baggage(header)


def format_traceparent(context: Span | NonRecordingSpan | SpanContext) -> str:
    return "00-%032x-%016x-%02x" % (context._tid, context._sid, context.flags & 0xFF)


def outgoing_traceparent(context: Span | NonRecordingSpan | SpanContext) -> str | None:
    """The ``traceparent`` value an outgoing message carries for ``context``, or
    ``None`` when ``tracecontext`` propagation is off (for adapters that write their
    own headers; :func:`inject` does this for header mappings)."""
    return format_traceparent(context) if _tracecontext else None


def outgoing_baggage() -> str:
    """The ``baggage`` value an outgoing message carries: the current context's
    baggage, or ``""`` when there is none or ``baggage`` propagation is off."""
    return _baggage.current_header() if _baggage_on else ""


def _clean_tracestate(value: str) -> str:
    if not value:
        return ""
    members = [m.strip() for m in value.split(",") if m.strip()]
    if len(members) > MAX_TRACESTATE_MEMBERS:
        return ""
    for member in members:
        if not _TRACESTATE_MEMBER.fullmatch(member):
            return ""
    return ",".join(members)


def _lookup(carrier: Mapping[str, Any], name: str) -> str:
    value = carrier.get(name)
    if value is None:
        for key, candidate in carrier.items():
            if isinstance(key, str) and key.lower() == name:
                value = candidate
                break
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    return value if isinstance(value, str) else ""


def extract(
    carrier: Mapping[str, Any],
    getter: Callable[[Mapping[str, Any], str], str] | None = None,
) -> SpanContext | None:
    """Read ``traceparent``/``tracestate`` from a header mapping (keys matched without
    regard to case). Returns the remote :class:`SpanContext`, or ``None`` when there is
    none or it is malformed. ``getter(carrier, name)`` overrides the lookup."""
    if not _tracecontext:
        return None
    try:
        get = getter or _lookup
        traceparent = get(carrier, "traceparent")
        if not traceparent:
            return None
        return parse_traceparent(traceparent, get(carrier, "tracestate") or "")
    except Exception:
        return None


def extract_baggage(
    carrier: Mapping[str, Any],
    getter: Callable[[Mapping[str, Any], str], str] | None = None,
) -> dict[str, str]:
    """The entries of the ``baggage`` header in ``carrier`` (``{}`` when there is none,
    or when ``baggage`` propagation is off); see :mod:`infratrace.baggage` for the
    limits. Pass them to :func:`infratrace.baggage.attach` for the request's context."""
    if not _baggage_on:
        return {}
    try:
        header = (getter or _lookup)(carrier, "baggage")
        return _baggage.parse_baggage(header) if header else {}
    except Exception:
        return {}


def inject(
    carrier: MutableMapping[str, Any],
    span: Span | NonRecordingSpan | SpanContext | None = None,
) -> MutableMapping[str, Any]:
    """Write ``traceparent`` (and ``tracestate`` when there is one) of ``span`` —
    the current span by default — and the current context's ``baggage`` into
    ``carrier``; returns the carrier. Existing values are overwritten. No
    ``traceparent`` is written when there is no span, no ``baggage`` when the context
    has none; the configured ``propagators`` decide which of the two are written."""
    try:
        if _tracecontext:
            context = span if span is not None else current_span()
            if context is not None:
                carrier["traceparent"] = format_traceparent(context)
                if context.tracestate:
                    carrier["tracestate"] = context.tracestate
        if _baggage_on:
            header = _baggage.current_header()
            if header:
                carrier["baggage"] = header
    except Exception:  # a carrier that refuses a key: the request goes on without it
        pass
    return carrier
