"""Making a span the current span for a block of the middleware's own code.

The public core API has ``begin()`` (current until ``end()``) and ``start_span()``
(never current). Neither fits an HTTP server span: it must be current while the app
runs, yet it ends in ``send`` — which Starlette may call from a child task (a streamed
body runs in a task group under ASGI spec < 2.4), where resetting the context of the
request task is impossible. So the span is started with ``start_span`` and made current
here with a token the middleware resets itself, always in its own context.

This reaches into ``infratrace._span`` (the only private core import of the adapter);
the proposed public replacement is ``infratrace.use_span(span) -> Token`` /
``infratrace.restore(token)`` (see docs/asgi.md)."""

from __future__ import annotations

from contextvars import Token

from infratrace import NonRecordingSpan, Span
from infratrace._span import _current

__all__ = ["activate", "restore"]

AnySpan = Span | NonRecordingSpan


def activate(span: AnySpan) -> Token[AnySpan | None]:
    return _current.set(span)


def restore(token: Token[AnySpan | None]) -> None:
    try:
        _current.reset(token)
    except ValueError:  # not our context any more: nothing of ours to undo here
        pass
