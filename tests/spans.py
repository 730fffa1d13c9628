"""Ended spans as drivers receive them, for driver tests that call a driver directly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infratrace import Resource, Span, SpanContext, SpanData
from infratrace._spandata import snapshot

RESOURCE = Resource({"service.name": "t", "project": "t", "profile": "p", "node": "n", "process.pid": 1})


def span_data(
    name: str = "s",
    attrs: Mapping[str, Any] | None = None,
    *,
    kind: str = "internal",
    parent: Any = None,
    duration_ns: int = 1000,
    status: str | None = None,
    message: str | None = None,
    code: int | None = None,
    resource: Resource = RESOURCE,
) -> SpanData:
    """A real span, begun and ended ``duration_ns`` later, as its SpanData (``parent``:
    a span, a context or another SpanData)."""
    if isinstance(parent, SpanData):
        parent = SpanContext(int(parent.trace_id, 16), int(parent.span_id, 16))
    span = Span(name, dict(attrs or {}), kind, parent)
    if status is not None:
        span.set_status(status, message, code)
    span._t1 = span._t0 + duration_ns
    return snapshot(span, resource)
