# mypy: disable-error-code="import-untyped"
"""Opt-in per-middleware timings (``INFRATRACE_DJANGO["middleware_timings"] = True``):
one ``web:middleware`` span per request with each middleware's own time as attributes
(``django.middleware.<dotted class>.ms``), instead of one span per middleware.

Django builds its chain as ``convert_exception_to_response(instance)`` closures, each
instance calling ``self.get_response``. We walk that chain once at start-up and wrap
each instance's ``get_response`` (an instance attribute, set by Django itself) with a
clock read on the way in and out; a middleware's own time is the time between its
entry and the next one's entry plus between the next one's exit and its own exit.
A function-style middleware (a closure) cannot be walked through: it and everything
below it are reported together under its name."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction

from infratrace.instrumentation import AnySpan, now_ns, start_span

from ._views import dotted_path

__all__ = ["MiddlewareTimings", "RequestTimings"]

_perf_ns = time.perf_counter_ns
TIMINGS_ATTR = "_infratrace_timings"  # set on the request by the middleware


class RequestTimings:
    """Clock readings of one request: entry/exit of each boundary."""

    __slots__ = ("enter", "exit", "names")

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.enter = [0] * (len(names) + 1)
        self.exit = [0] * (len(names) + 1)

    def finish(self, parent: AnySpan) -> None:
        """Record the ``web:middleware`` span under ``parent``; a failure here must
        cost the request's own span nothing."""
        try:
            self._record(parent)
        except Exception:
            pass

    def _record(self, parent: AnySpan) -> None:
        count = len(self.names)
        first_in, first_out = self.enter[0], self.exit[0]
        if not first_in or not first_out:
            return
        attrs: dict[str, Any] = {"kind": "web", "target": "middleware", "module": "django"}
        total = 0
        for index, name in enumerate(self.names):
            inner_in, inner_out = self.enter[index + 1], self.exit[index + 1]
            if inner_in and inner_out:  # the next one ran: subtract it
                own = (inner_in - self.enter[index]) + (self.exit[index] - inner_out)
            elif self.exit[index]:  # short-circuited (or the last): all of it
                own = self.exit[index] - self.enter[index]
            else:
                continue
            total += own
            attrs[f"django.middleware.{name}.ms"] = round(own / 1e6, 3)
        attrs["django.middleware.count"] = count
        attrs["django.middleware.total_ms"] = round(total / 1e6, 3)
        # The span covers the chain as it ran, from the first entry to the last exit.
        # The readings come from the performance counter (cheap, and made for
        # durations); the two clocks read side by side now convert them to the
        # spans' clock.
        offset = now_ns() - _perf_ns()
        span = start_span("web:middleware", attrs, kind="internal", parent=parent, start_time=offset + first_in)
        span.end(end_time=offset + first_out)


class MiddlewareTimings:
    """The instrumented chain below the trace middleware."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names

    def start(self) -> RequestTimings:
        return RequestTimings(self.names)

    @classmethod
    def install(cls, get_response: Callable[..., Any]) -> tuple[MiddlewareTimings, Callable[..., Any]] | None:
        """Wrap every boundary below the trace middleware; returns the timings and
        the (timed) handler the trace middleware calls, or ``None`` when there is no
        middleware below it."""
        from django.core.handlers.base import BaseHandler

        instances: list[Any] = []
        names: list[str] = []
        handler: Any = get_response
        while True:
            target = _unwrap(handler)
            if isinstance(getattr(target, "__self__", None), BaseHandler):
                break  # the view handler: end of the chain
            if not hasattr(target, "get_response"):
                names.append(dotted_path(target))  # a closure middleware: stop here
                break
            instances.append(target)
            names.append(dotted_path(type(target)))
            handler = target.get_response
        if not names:
            return None
        for index, instance in enumerate(instances):
            instance.get_response = _timed(instance.get_response, index + 1)
        return cls(tuple(names)), _timed(get_response, 0)


def _unwrap(handler: Any) -> Any:
    """The middleware instance behind Django's wrappers (``convert_exception_to_response``
    copies the instance's ``__dict__`` onto its closure and sets ``__wrapped__``; the
    sync/async adapters keep the callee as ``awaitable``/``func``)."""
    for _ in range(8):
        inner = getattr(handler, "__wrapped__", None)
        if inner is None:
            inner = getattr(handler, "awaitable", None) or getattr(handler, "func", None)
            if inner is None or hasattr(handler, "get_response"):
                return handler
        handler = inner
    return handler


def _timed(handler: Callable[..., Any], index: int) -> Callable[..., Any]:
    if iscoroutinefunction(handler):

        async def timed_async(request: Any) -> Any:
            timings = _timings_of(request)
            if timings is None:
                return await handler(request)
            timings.enter[index] = _perf_ns()
            try:
                return await handler(request)
            finally:
                timings.exit[index] = _perf_ns()

        return timed_async

    def timed(request: Any) -> Any:
        timings = _timings_of(request)
        if timings is None:
            return handler(request)
        timings.enter[index] = _perf_ns()
        try:
            return handler(request)
        finally:
            timings.exit[index] = _perf_ns()

    return timed


def _timings_of(request: Any) -> RequestTimings | None:
    return getattr(request, TIMINGS_ATTR, None)
