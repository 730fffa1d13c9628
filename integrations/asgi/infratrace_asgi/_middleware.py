"""``TraceMiddleware``: the ASGI middleware. HTTP requests and WebSocket connections
become ``http:`` server spans, Starlette endpoints ``web:`` children, lifespan
``event:`` spans; every other scope type passes straight through."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from infratrace import ConfigError, baggage
from infratrace.instrumentation import WebOptions, attach, detach

from ._http import HttpCycle, HttpSetup, RecordingHttpCycle
from ._lifespan import LifespanCycle
from ._routes import EXCLUDED, STATE_KEY, RouteTable, find_router
from ._websocket import WebSocketCycle

__all__ = ["TraceMiddleware"]

OPTION_PREFIX = "TraceMiddleware"
ASGI_OPTION_KEYS = ("record_messages",)


class TraceMiddleware:
    """Trace every request of an ASGI app.

    ``app.add_middleware(TraceMiddleware, excluded_paths=["^/health$"])`` in Starlette
    or FastAPI, or ``TraceMiddleware(app, ...)`` around any ASGI app. Options are those
    of :class:`infratrace.instrumentation.WebOptions` plus ``record_messages`` (ASGI
    messages as span events); a bad one raises :class:`infratrace.ConfigError` naming
    the key."""

    def __init__(self, app: ASGIApp, **options: Any) -> None:
        self.app = app
        self.options = WebOptions.from_mapping(options, OPTION_PREFIX, ASGI_OPTION_KEYS)
        record = self.options.extra.get("record_messages", False)
        if not isinstance(record, bool):
            raise ConfigError(f"{OPTION_PREFIX}.record_messages", record, "expected true or false")
        self.record_messages = record
        self._routes: RouteTable | None = None
        self._looked_for_router = False
        self._http = HttpSetup(self.options, record)
        self._cycle = RecordingHttpCycle if record else HttpCycle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "websocket":
                await self._websocket(scope, receive, send)
            elif kind == "lifespan":
                await self._lifespan(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        # HTTP inline, not in a method of its own: one coroutine less per request.
        options = self.options
        try:
            if options.excluded_paths and options.excluded(scope.get("path", "")):
                scope[STATE_KEY] = EXCLUDED
                cycle = None
            else:
                routes = self._routes
                if routes is None or len(routes.router.routes) != routes.count:
                    self._route_table(scope)
                cycle = self._cycle(scope, receive, send, self._http)
                scope[STATE_KEY] = cycle
        except Exception:  # tracing must never stop the request
            cycle = None
        if cycle is None:
            await self.app(scope, receive, send)
            return
        # Current while the app runs, set and reset here in the request's own context:
        # the span itself may end in another task (Starlette streams bodies from a task
        # group under ASGI spec < 2.4), where begin()'s own reset would not reach us.
        token = attach(cycle.span)
        carried = cycle.baggage  # the caller's baggage, for this request's context
        baggage_token = baggage.attach(carried) if carried else None
        try:
            await self.app(scope, cycle.receive, cycle.send)
        except BaseException as exc:
            try:
                cycle.raised(exc)
            except Exception:  # never replace the app's exception with ours
                pass
            raise
        else:
            if not cycle.finished:
                try:
                    cycle.returned()
                except Exception:
                    pass
        finally:
            budget = cycle._budget  # end_budget(), inlined
            if budget is not None:
                budget.deactivate()
            detach(token)
            if baggage_token is not None:
                baggage.detach(baggage_token)
            # The scope refers to the cycle and the cycle to the scope: drop the
            # scope's side, or every request leaves a reference cycle to the
            # garbage collector (the cycle keeps the scope while its span may still
            # end in another task).
            if scope.get(STATE_KEY) is cycle:
                del scope[STATE_KEY]

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        options = self.options
        try:
            if options.excluded_paths and options.excluded(scope.get("path", "")):
                scope[STATE_KEY] = EXCLUDED
                cycle = None
            else:
                cycle = WebSocketCycle(scope, receive, send, options, self._route_table(scope))
                scope[STATE_KEY] = cycle
        except Exception:
            cycle = None
        if cycle is None:
            await self.app(scope, receive, send)
            return
        token = attach(cycle.span)
        carried = cycle.baggage
        baggage_token = baggage.attach(carried) if carried else None
        try:
            await self.app(scope, cycle.receive, cycle.send)
        except BaseException as exc:
            try:
                cycle.end(exc)
            except Exception:
                pass
            raise
        else:
            try:
                cycle.end(None)
            except Exception:
                pass
        finally:
            cycle.end_budget()
            detach(token)
            if baggage_token is not None:
                baggage.detach(baggage_token)
            if scope.get(STATE_KEY) is cycle:
                del scope[STATE_KEY]

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            self._route_table(scope)  # instrument routes before the first request
        except Exception:
            pass
        cycle = LifespanCycle(receive, send, self.options.service)
        try:
            await self.app(scope, cycle.receive, cycle.send)
        except BaseException as exc:
            try:
                cycle.raised(exc)
            except Exception:
                pass
            raise

    def _route_table(self, scope: Scope) -> RouteTable | None:
        routes = self._routes
        if routes is None:
            # Looked for once: through the wrapped app's ``.app`` chain, else the
            # Starlette app in the scope. Not Starlette: plain http:<METHOD> names.
            if self._looked_for_router:
                return None
            self._looked_for_router = True
            router = find_router(self.app, scope.get("app"))
            if router is None:
                return None
            routes = self._routes = self._http.routes = RouteTable(router, self.options.service)
        routes.refresh()
        return routes
