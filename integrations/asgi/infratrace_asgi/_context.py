"""Making the ``http:`` span the current span while the app runs.

The public core API has ``begin()`` (current until ``end()``) and ``start_span()``
(never current). Neither fits an HTTP server span: it must be current while the app
runs, yet it ends in ``send`` — which Starlette may call from a child task (a streamed
body runs in a task group under ASGI spec < 2.4), where resetting the request task's
context is impossible, so the span would stay "current" in the request task after the
request. So the middleware starts the span with ``start_span`` and sets/resets the
current-span variable itself, always in its own context.

This is the adapter's only private core import; the proposed public replacement is
``infratrace.use_span(span) -> Token`` / ``infratrace.restore_span(token)`` (see
docs/asgi.md)."""

from __future__ import annotations

from infratrace._span import _current

__all__ = ["current_span_var"]

current_span_var = _current
