"""ASGI lifespan: ``event:lifespan.startup`` / ``event:lifespan.shutdown`` spans, and
the pipeline flushed before the server is told that shutdown is complete (so a
process that exits right after loses no span)."""

from __future__ import annotations

from typing import Any

from starlette.types import Message, Receive, Send

import infratrace
from infratrace.instrumentation import AnySpan

__all__ = ["LifespanCycle"]

FLUSH_TIMEOUT = 5.0


class LifespanCycle:
    """The span begins when the app receives ``lifespan.startup``/``.shutdown`` and is
    current until the app answers, so spans of the app's own startup code (a
    ``@infratrace.trigger`` function, say) are its children. Both wrappers are awaited
    by the app in its own task, so ``begin``/``end`` happen in one context."""

    __slots__ = ("_receive", "_send", "_service", "span")

    def __init__(self, receive: Receive, send: Send, service: str) -> None:
        self.span: AnySpan | None = None
        self._send = send
        self._receive = receive
        self._service = service

    async def receive(self) -> Message:
        message = await self._receive()
        kind = message["type"]
        if kind in ("lifespan.startup", "lifespan.shutdown"):
            self._begin(kind[len("lifespan.") :])
        return message

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind.endswith(".complete"):
            self._end(None)
        elif kind.endswith(".failed"):
            lines = str(message.get("message") or "").strip().splitlines()
            self._end(lines[-1] if lines else "lifespan failed")
        if kind.startswith("lifespan.shutdown."):
            try:
                infratrace.force_flush(FLUSH_TIMEOUT)
            except Exception:
                pass
        await self._send(message)

    def raised(self, exc: BaseException) -> None:
        span, self.span = self.span, None
        if span is not None:
            span.end(exc)

    def _begin(self, phase: str) -> None:
        try:
            target = f"lifespan.{phase}"
            attrs: dict[str, Any] = {"kind": "event", "target": target, "module": "asgi", "operation": phase}
            if self._service:
                attrs["service"] = self._service
            self.span = infratrace.begin(f"event:lifespan.{phase}", attrs, kind="internal")
        except Exception:
            self.span = None

    def _end(self, failure: str | None) -> None:
        span, self.span = self.span, None
        if span is None:
            return
        try:
            if failure is None:
                span.end()
            else:
                span.end(status="error", message=failure)
        except Exception:
            pass
