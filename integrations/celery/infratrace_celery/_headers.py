"""Trace context in Celery messages: where it is written and where it is read back.

Celery delivers custom message headers to the worker in two shapes depending on the
version and task protocol: as top-level keys of the message headers (protocol 2, which
the worker turns into attributes of ``task.request``), and nested under
``headers["headers"]`` (what ``task.request.headers`` holds when that key exists, and
what some kombu/Celery versions deliver instead). So the producer writes both and the
worker reads either."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from infratrace import NonRecordingSpan, Span, SpanContext
from infratrace.instrumentation import outgoing_baggage, outgoing_traceparent, remote_baggage, remote_parent

__all__ = ["PUBLISHED_HEADER", "baggage_from_request", "context_from_headers", "context_from_request", "write_context"]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
BAGGAGE = "baggage"
# Unix nanoseconds of the publish, for the consumer's enqueue-to-start latency.
PUBLISHED_HEADER = "infratrace_published_ns"


def write_context(headers: MutableMapping[str, Any], span: Span | NonRecordingSpan, published_ns: int) -> None:
    """Put the span's context into both header places. Always overwrite: on a retry
    Celery copies the previous message's custom headers (an older ``traceparent``)
    into the re-published message.

    This runs on every publish, so it is plain item assignment: no intermediate
    dict, no ABC ``isinstance`` for the usual plain-dict headers."""
    traceparent = outgoing_traceparent(span)  # None: tracecontext propagation is off
    tracestate: str = span.tracestate if traceparent is not None else ""
    carried = outgoing_baggage()
    headers[PUBLISHED_HEADER] = published_ns
    nested = headers.get("headers")
    if nested is None or (type(nested) is not dict and not isinstance(nested, MutableMapping)):
        nested = headers["headers"] = {}
    nested[PUBLISHED_HEADER] = published_ns
    _put(headers, nested, TRACEPARENT, traceparent)
    _put(headers, nested, TRACESTATE, tracestate)
    _put(headers, nested, BAGGAGE, carried)


def _put(headers: MutableMapping[str, Any], nested: MutableMapping[str, Any], name: str, value: str | None) -> None:
    """Set ``name`` in both places, or remove a copied-over one when there is none."""
    if value:
        headers[name] = nested[name] = value
    else:
        if name in headers:
            del headers[name]
        if name in nested:
            del nested[name]


def _parse(traceparent: Any, tracestate: Any) -> SpanContext | None:
    if isinstance(traceparent, bytes):
        traceparent = traceparent.decode("latin-1")
    if not isinstance(traceparent, str) or not traceparent:
        return None
    if isinstance(tracestate, bytes):
        tracestate = tracestate.decode("latin-1")
    return remote_parent(traceparent, tracestate if isinstance(tracestate, str) else None)


def context_from_headers(headers: Mapping[str, Any] | None) -> tuple[SpanContext | None, Any]:
    """``(parent context, published_ns)`` from raw message headers; ``(None, None)``
    when absent or malformed (a malformed ``traceparent`` starts a new trace)."""
    if not isinstance(headers, Mapping):
        return None, None
    context = _parse(headers.get(TRACEPARENT), headers.get(TRACESTATE))
    published = headers.get(PUBLISHED_HEADER)
    if context is None:
        nested = headers.get("headers")
        if isinstance(nested, Mapping):
            context = _parse(nested.get(TRACEPARENT), nested.get(TRACESTATE))
            published = nested.get(PUBLISHED_HEADER)
    return context, published


def context_from_request(request: Any) -> tuple[SpanContext | None, Any]:
    """The same from a task's ``request`` (a ``celery.app.task.Context``): top-level
    headers are its attributes, the nested ones its ``headers`` mapping."""
    context = _parse(getattr(request, TRACEPARENT, None), getattr(request, TRACESTATE, None))
    if context is not None:
        return context, getattr(request, PUBLISHED_HEADER, None)
    nested = getattr(request, "headers", None)
    if isinstance(nested, Mapping):
        context = _parse(nested.get(TRACEPARENT), nested.get(TRACESTATE))
        if context is not None:
            return context, nested.get(PUBLISHED_HEADER)
    return None, None


def baggage_from_request(request: Any) -> dict[str, str]:
    """The baggage the producer's context carried, from a task's ``request`` (either
    header place); ``{}`` when none."""
    value = getattr(request, BAGGAGE, None)
    if not value:
        nested = getattr(request, "headers", None)
        value = nested.get(BAGGAGE) if isinstance(nested, Mapping) else None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return remote_baggage(value) if isinstance(value, str) and value else {}
