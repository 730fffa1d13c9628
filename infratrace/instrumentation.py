"""The API instrumentations are built on: infratrace's own Django, Flask, ASGI and
Celery adapters, and third parties'.

An adapter translates its framework's events into these calls and imports nothing
else from infratrace (the public ``infratrace`` package aside). What it covers:

- **spans**: :func:`begin` / :func:`start_span` with an explicit ``start_time``, and
  ``span.end(end_time=...)``, both in Unix nanoseconds from :func:`now_ns`, the clock
  spans themselves read. The attributes passed are copied, whatever tracer is
  installed, so an adapter may pass a dict it shares between requests;
- **the current span**: :func:`attach` / :func:`detach` around a piece of work, or
  :func:`set_current_span` for a context that lives exactly as long as one request
  (a WSGI/ASGI request's own context copy, a Celery task's), which needs no token;
- **the request's span budget**: :class:`SpanBudget` (``activate``/``deactivate``) and
  :func:`report_budget`;
- **server spans**: :func:`request_attributes` (OpenTelemetry's HTTP semantic
  conventions), :func:`http_span_name`, :func:`set_route` once routing ran,
  :func:`finish_http_span` from a status code and an exception, :class:`WebOptions`
  (the options every web adapter accepts);
- **the pipeline's own work**: :func:`in_pipeline` is true while a driver writes a
  batch, on whatever thread; an instrumentation of a library a driver may send with
  makes no span then;
- **propagation**: :func:`extract` / :func:`inject` for header carriers,
  :func:`remote_parent` for an incoming message's raw ``traceparent``/``tracestate``
  and :func:`outgoing_traceparent` / :func:`outgoing_baggage` for an outgoing one's
  (they honour the configured propagators), :func:`parse_traceparent` /
  :func:`format_traceparent` for single values, :func:`extract_baggage` /
  :func:`remote_baggage` and
  :mod:`infratrace.baggage` (``attach``/``detach``) for the request's baggage;
- **database queries**: :class:`DatabaseInfo` (``db.system``, ``db.namespace``, the
  server; a cache of statements), :func:`begin_query_span` / :func:`end_query_span`
  (``db:<operation> <table>`` client spans, only under a current span unless
  ``root_spans``), :func:`sanitize_sql` (literals replaced by ``?``),
  :func:`sql_operation_and_target` and :func:`db_system`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from . import _spandata, _tracer
from ._budget import SpanBudget, active_budget, span_budget
from ._db import DatabaseInfo, begin_query_span, db_system, end_query_span, sanitize_sql, sql_operation_and_target
from ._pipeline import in_pipeline
from ._propagation import (
    extract,
    extract_baggage,
    format_traceparent,
    inject,
    outgoing_baggage,
    outgoing_traceparent,
    parse_traceparent,
    remote_baggage,
    remote_parent,
)
from ._span import AnySpan, NonRecordingSpan, Parent, Span, SpanContext, _current, attach, current_span, detach
from ._tracer import trace_attrs
from ._web import (
    DEFAULT_SENSITIVE_QUERY_KEYS,
    KNOWN_METHODS,
    WebOptions,
    finish_http_span,
    http_span_name,
    normalize_method,
    redact_query,
    report_budget,
    request_attributes,
    set_route,
    websocket_span_name,
)

__all__ = [
    "DEFAULT_SENSITIVE_QUERY_KEYS",
    "KNOWN_METHODS",
    "AnySpan",
    "DatabaseInfo",
    "NonRecordingSpan",
    "Span",
    "SpanBudget",
    "SpanContext",
    "WebOptions",
    "active_budget",
    "attach",
    "begin",
    "begin_query_span",
    "current_span",
    "db_system",
    "detach",
    "end_query_span",
    "extract",
    "extract_baggage",
    "finish_http_span",
    "format_traceparent",
    "http_span_name",
    "in_pipeline",
    "inject",
    "normalize_method",
    "now_ns",
    "outgoing_baggage",
    "outgoing_traceparent",
    "parse_traceparent",
    "redact_query",
    "remote_baggage",
    "remote_parent",
    "report_budget",
    "request_attributes",
    "sanitize_sql",
    "set_current_span",
    "set_route",
    "span_budget",
    "sql_operation_and_target",
    "start_span",
    "trace_attrs",
    "websocket_span_name",
]

_perf_ns = time.perf_counter_ns


def now_ns() -> int:
    """Now, in Unix nanoseconds, on the clock spans read (monotonic, so two readings
    never go backwards). Pass it as ``start_time``/``end_time``."""
    return _perf_ns() + _spandata._clock_offset_ns


def begin(
    name: str,
    attrs: Mapping[str, Any] | None = None,
    *,
    kind: str | None = None,
    parent: Parent | None = None,
    start_time: int | None = None,
) -> AnySpan:
    """:func:`infratrace.begin` (the span becomes current), optionally started at
    ``start_time`` (Unix ns, from :func:`now_ns`)."""
    hook = _tracer._hook
    if start_time is None:
        return hook.begin(name, attrs, kind=kind, parent=parent)  # type: ignore[no-any-return]
    return hook.begin(name, attrs, kind=kind, parent=parent, start_time=start_time)  # type: ignore[call-arg,no-any-return]


def start_span(
    name: str,
    attrs: Mapping[str, Any] | None = None,
    *,
    kind: str | None = None,
    parent: Parent | None = None,
    start_time: int | None = None,
) -> AnySpan:
    """:func:`infratrace.start_span` (the span does not become current), optionally
    started at ``start_time`` (Unix ns, from :func:`now_ns`)."""
    hook = _tracer._hook
    if start_time is None:
        return hook.start_span(name, attrs, kind=kind, parent=parent)  # type: ignore[no-any-return]
    return hook.start_span(name, attrs, kind=kind, parent=parent, start_time=start_time)  # type: ignore[call-arg,no-any-return]


def set_current_span(span: AnySpan | None) -> None:
    """Make ``span`` the current span of the running context, for good.

    For a context that exists for one request or task only (the copy a WSGI server
    thread, an ASGI task or a Celery task runs in): the context is thrown away with
    the request, so there is nothing to restore and no token to keep. Anywhere else,
    use :func:`attach` / :func:`detach`."""
    _current.set(span)
