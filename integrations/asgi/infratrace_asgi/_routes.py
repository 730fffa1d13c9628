"""Starlette route discovery: route templates for span names and the ``web:`` span
around each endpoint.

Starlette's router calls ``route.handle(scope, receive, send)``, which calls the
route's ASGI ``app`` attribute — the same attribute Starlette itself wraps for
``Route(..., middleware=[...])``. :func:`instrument` wraps it once per route with
:class:`EndpointSpan` (idempotent, no class or module is patched), so the ``web:``
span covers exactly the endpoint: from after routing to the end of the route's app
(the response it returns and its background tasks included)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable
from typing import Any

from starlette.routing import BaseRoute, Host, Mount, Route, Router, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

import infratrace
from infratrace.instrumentation import KNOWN_METHODS, http_span_name

__all__ = ["EXCLUDED", "STATE_KEY", "EndpointSpan", "RouteTable", "endpoint_name", "find_router"]

# Where the middleware leaves its per-request state in the scope (a mutable object in
# the scope survives middleware that copy the scope dict on the way down), or
# EXCLUDED for a request on an excluded path: no web: span either.
STATE_KEY = "infratrace.request"
EXCLUDED = False
MAX_APP_DEPTH = 32


def endpoint_name(endpoint: Any) -> str:
    """``module.qualname`` of a route's endpoint (function, method, class, or the class
    of a callable instance); ``functools.partial`` is unwrapped."""
    while isinstance(endpoint, functools.partial):
        endpoint = endpoint.func
    if not (inspect.isfunction(endpoint) or inspect.ismethod(endpoint) or inspect.isclass(endpoint)):
        endpoint = type(endpoint)
    qualname = getattr(endpoint, "__qualname__", None) or getattr(endpoint, "__name__", "endpoint")
    module = getattr(endpoint, "__module__", None)
    return f"{module}.{qualname}" if module else str(qualname)


class EndpointSpan:
    """ASGI wrapper around one route's app: a ``web:<endpoint>`` internal span, child of
    the current (``http:``) span, and the route template handed to the middleware."""

    __slots__ = ("app", "attributes", "name", "route_attributes", "server_names", "template")

    def __init__(self, app: ASGIApp, name: str, template: str, route_name: str, service: str) -> None:
        self.app = app
        self.name = f"web:{name}"
        self.template = template
        self.attributes: dict[str, Any] = {
            "kind": "web",
            "target": name,
            "module": "asgi",
            "operation": route_name,
            "http.route": template,
        }
        if service:
            self.attributes["service"] = service
        # What set_route() puts on the http: span, built once per route, not per request.
        self.route_attributes: dict[str, Any] = {"http.route": template, "target": template}
        self.server_names: dict[str, str] = {}  # read directly on the hot path; see server_name()

    def server_name(self, method: str) -> str:
        """``http:<METHOD> <template>`` for the request's server span (cached per method;
        unknown methods are not cached, they become ``_OTHER`` anyway)."""
        name = self.server_names.get(method)
        if name is None:
            name = http_span_name(method, self.template)
            if method in KNOWN_METHODS:
                self.server_names[method] = name
        return name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            state = scope.get(STATE_KEY)
            if state is not None:
                if state is EXCLUDED:
                    await self.app(scope, receive, send)
                    return
                state.route = self
            span = infratrace.begin(self.name, self.attributes, kind="internal")
        except Exception:  # tracing must never break the endpoint
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except BaseException as exc:
            try:
                span.end(exc)
            except Exception:  # never replace the endpoint's exception with ours
                pass
            raise
        try:
            span.end()
        except Exception:
            pass


class RouteTable:
    """The route templates of one Starlette router (mounts and hosts included), and the
    :class:`EndpointSpan` wrappers placed on its routes."""

    __slots__ = ("count", "router", "service", "templates")

    def __init__(self, router: Router, service: str) -> None:
        self.router = router
        self.service = service
        self.templates: dict[int, str] = {}  # id(route) -> full template
        self.count = -1

    def refresh(self) -> None:
        """Instrument routes added since the last call (top-level count check: cheap
        enough to run on every request)."""
        routes = self.router.routes
        if len(routes) != self.count:
            self.count = len(routes)
            self._walk(routes, "", 0)

    def template_of(self, route: Any) -> str | None:
        """The template of ``scope["route"]`` (a 405 is routed but never reaches the
        endpoint); ``None`` for a mount that matched nothing inside (a 404)."""
        template = self.templates.get(id(route))
        if template is None and isinstance(route, (Route, WebSocketRoute)):
            template = route.path
        return template

    def _walk(self, routes: Iterable[BaseRoute], prefix: str, depth: int) -> None:
        if depth > MAX_APP_DEPTH:
            return
        for route in routes:
            if isinstance(route, (Route, WebSocketRoute)):
                template = prefix + route.path
                self.templates[id(route)] = template
                if not isinstance(route.app, EndpointSpan):
                    route.app = EndpointSpan(route.app, endpoint_name(route.endpoint), template, route.name, self.service)
            elif isinstance(route, Mount):
                inner = route.routes
                if inner:
                    self._walk(inner, prefix + route.path, depth + 1)
                else:  # a mounted plain ASGI app (StaticFiles, a WSGI bridge, ...)
                    template = prefix + route.path + "/{path}"
                    self.templates[id(route)] = template
                    if not isinstance(route.app, EndpointSpan):
                        name = endpoint_name(route.app)
                        route.app = EndpointSpan(route.app, name, template, route.name or "", self.service)
            elif isinstance(route, Host):
                self._walk(route.routes, prefix, depth + 1)


def find_router(*candidates: Any) -> Router | None:
    """The Starlette router behind an app: a ``Starlette``/FastAPI app (``.router``), a
    bare ``Router``, or either one wrapped in middleware that keep the conventional
    ``.app`` attribute."""
    for candidate in candidates:
        app = candidate
        for _ in range(MAX_APP_DEPTH):
            if app is None:
                break
            if isinstance(app, Router):
                return app
            router = getattr(app, "router", None)
            if isinstance(router, Router):
                return router
            app = getattr(app, "app", None)
    return None
