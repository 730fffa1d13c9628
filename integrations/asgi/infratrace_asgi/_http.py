"""One HTTP request: its ``http:`` server span, and the ``send``/``receive`` wrappers
that see the response start, the last body chunk and a client disconnect.

Kept small on purpose: the wrappers do one dict lookup per message and allocate
nothing unless an option asks for it."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

import infratrace
from infratrace.instrumentation import (
    AnySpan,
    SpanBudget,
    SpanContext,
    WebOptions,
    finish_http_span,
    http_span_name,
    remote_baggage,
    report_budget,
    request_attributes,
    set_route,
    start_span,
)
from infratrace.instrumentation import remote_parent as _remote_parent

from ._routes import EndpointSpan, RouteTable

__all__ = ["HttpCycle", "HttpSetup", "RecordingHttpCycle", "parse_request"]

CLIENT_CLOSED = 499  # nginx's "client closed request": the span's code on a disconnect


def parse_request(scope: Scope, options: WebOptions, method: str) -> tuple[dict[str, Any], SpanContext | None]:
    """Attributes of the request (OTel semconv + infratrace's own) and the remote parent from
    ``traceparent``/``tracestate`` (a malformed one is ignored)."""
    traceparent = tracestate = user_agent = host = None
    headers = scope["headers"]
    for name, value in headers:
        if name == b"traceparent":
            traceparent = value
        elif name == b"tracestate":
            tracestate = value
        elif name == b"user-agent":
            user_agent = value
        elif name == b"host":
            host = value
    parent = remote_parent(traceparent, tracestate)
    server_address, server_port = _server(host, scope.get("server"))
    client = scope.get("client")
    http_version = scope.get("http_version")
    attrs = request_attributes(
        framework="asgi",
        method=method,
        path=scope.get("path", ""),
        scheme=scope.get("scheme") or ("ws" if scope["type"] == "websocket" else "http"),
        server_address=server_address,
        server_port=server_port,
        client_address=client[0] if client else None,
        user_agent=user_agent.decode("latin-1") if user_agent else None,
        protocol_version=http_version,
        service=options.service,
    )
    if options.request_headers:
        attrs.update(options.header_attributes("request", decode_headers(headers)))
    return attrs, parent


def remote_parent(traceparent: bytes | None, tracestate: bytes | None) -> SpanContext | None:
    """The caller's span from the raw header values: what infratrace.extract() does,
    minus its case-insensitive header lookup (ASGI servers lower-case header names)."""
    if not traceparent:
        return None
    return _remote_parent(traceparent.decode("latin-1"), tracestate.decode("latin-1") if tracestate else None)


def request_baggage(headers: Any) -> dict[str, str] | None:
    """The request's ``baggage`` entries (several headers joined), or ``None``."""
    values = [value.decode("latin-1") for name, value in headers if name == b"baggage"]
    return (remote_baggage(",".join(values)) or None) if values else None


def decode_headers(headers: Any) -> list[tuple[str, str]]:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]


_WANTED = frozenset({b"traceparent", b"tracestate", b"user-agent", b"host", b"baggage"})


def _hashable(server: Any) -> Any:
    return tuple(server) if isinstance(server, list) else server


# Host header -> (server.address, server.port). Hosts are few; the bound keeps a client
# that sends random Host headers from growing it.
_hosts: dict[bytes, tuple[str, int | None]] = {}
MAX_CACHED_HOSTS = 256


def _server(host: bytes | None, server: Any) -> tuple[str | None, int | None]:
    if host:
        known = _hosts.get(host)
        if known is not None:
            return known
        text = host.decode("latin-1")
        name, sep, port = text.rpartition(":")
        parsed = (name, int(port)) if sep and port.isdigit() and not text.endswith("]") else (text, None)
        if len(_hosts) >= MAX_CACHED_HOSTS:
            _hosts.clear()
        _hosts[host] = parsed
        return parsed
    if server:
        return str(server[0]), server[1]
    return None, None


class HttpSetup:
    """What one middleware instance decides once instead of per request: its options
    reduced to flags, the route table, and the request attributes and span name that
    do not change between requests (see :meth:`base`)."""

    __slots__ = ("_bases", "budget", "options", "record", "routes", "start_work")

    def __init__(self, options: WebOptions, record_messages: bool) -> None:
        self.options = options
        self.record = record_messages
        self.routes: RouteTable | None = None
        self.start_work = bool(options.response_headers or options.response_traceparent or options.response_hook)
        self.budget = options.span_budget  # 0: unlimited, no budget per request
        self._bases: dict[tuple[Any, ...], tuple[dict[str, Any], str]] = {}

    def base(self, key: tuple[Any, ...], server: Any) -> tuple[dict[str, Any], str]:
        """``request_attributes()`` for this kind of request, with placeholders for
        what changes per request (path, client address, user agent), and the span's
        name before routing. ``key`` is ``(method, scheme, Host header or server,
        protocol version, has client address, has user agent)``; the caller looks it up
        in ``_bases`` itself, this builds a missing entry. The caller copies the
        attributes and overwrites the placeholders in place, so the attribute order is
        the same as ``request_attributes()`` builds. Keys are few (methods x Host
        headers); bounded."""
        method, scheme, host, version, client, agent = key
        server_address, server_port = _server(host if isinstance(host, bytes) else None, server)
        attrs = request_attributes(
            framework="asgi",
            method=method,
            path="",
            scheme=scheme,
            server_address=server_address,
            server_port=server_port,
            client_address="-" if client else None,
            user_agent="-" if agent else None,
            protocol_version=version,
            service=self.options.service,
        )
        entry = (attrs, http_span_name(method, None))
        if len(self._bases) >= MAX_CACHED_HOSTS:
            self._bases.clear()
        self._bases[key] = entry
        return entry


class HttpCycle:
    """State of one request; ``send``/``receive`` are handed to the app in place of the
    server's. The span ends at the last body chunk (``more_body`` false), or when the
    app returns, raises, is cancelled or the client goes away before that."""

    __slots__ = (
        "_budget",
        "_method",
        "_receive",
        "_scope",
        "_send",
        "_setup",
        "_trailers",
        "baggage",
        "disconnected",
        "finished",
        "route",
        "span",
        "status",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send, setup: HttpSetup) -> None:
        method = scope.get("method") or "GET"
        # One pass over the headers for the four the span needs (ASGI servers lower-case
        # header names); the full decode only when request headers are captured.
        traceparent = tracestate = agent = host = None
        self.baggage: dict[str, str] | None = None
        headers = scope["headers"]
        for name, value in headers:
            if name in _WANTED:
                if name == b"traceparent":
                    traceparent = value
                elif name == b"user-agent":
                    agent = value
                elif name == b"host":
                    host = value
                elif name == b"tracestate":
                    tracestate = value
                elif self.baggage is None:
                    self.baggage = request_baggage(headers)
        parent = None
        if traceparent:
            parent = _remote_parent(traceparent.decode("latin-1"), tracestate.decode("latin-1") if tracestate else None)
        client = scope.get("client")
        client_address = client[0] if client else None
        path = scope.get("path", "")
        # The lookup is inlined (a method call costs more than the lookup itself).
        key = (
            method,
            scope.get("scheme") or "http",
            host or _hashable(scope.get("server")),
            scope.get("http_version"),
            bool(client_address),
            bool(agent),
        )
        entry = setup._bases.get(key)
        if entry is None:
            entry = setup.base(key, scope.get("server"))
        base, span_name = entry
        # The tracer copies the attributes it is given (a replacement hook gets a copy
        # too), so the shared base is handed over as is and the per-request values
        # are set on the span.
        span = start_span(span_name, base, kind="server", parent=parent)
        self.span: AnySpan = span
        attrs: dict[str, Any] = {"target": path, "url.path": path}
        if client_address:
            attrs["client.address"] = client_address
        if agent:
            attrs["user_agent.original"] = agent.decode("latin-1")
        options = setup.options
        if options.record_query:  # off by default: query strings carry tokens
            query = options.query_attribute(scope.get("query_string", b"").decode("latin-1"))
            if query:
                attrs["url.query"] = query
        if options.request_headers:
            attrs.update(options.header_attributes("request", decode_headers(headers)))
        span.set_attributes(attrs)
        self.route: EndpointSpan | None = None  # set by the route's EndpointSpan
        self.status: int | None = None
        self.finished = False
        self.disconnected = False
        self._trailers = False
        self._method = method
        self._scope = scope
        self._send = send
        self._receive = receive
        self._setup = setup
        # Activated in the middleware's context (this runs there), and deactivated there
        # when the app returns: the span itself may end in another task. What
        # WebOptions.new_budget() returns, without the call.
        self._budget: SpanBudget | None = SpanBudget(setup.budget).activate() if setup.budget > 0 else None
        if options.request_hook is not None:
            options.run_request_hook(span, scope)

    def end_budget(self) -> None:
        if self._budget is not None:
            self._budget.deactivate()

    # -- the app's side ---------------------------------------------------------------
    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            await self._send(message)
            if not message.get("more_body", False) and not self._trailers:
                self._finish()
            return
        if kind == "http.response.start":
            self.status = message.get("status")
            self._trailers = message.get("trailers", False)
            if self._setup.start_work:
                message = self._start(message)
            await self._send(message)
            return
        await self._send(message)
        if (
            kind == "http.response.pathsend"
            or (kind == "http.response.trailers" and not message.get("more_trailers", False))
            or (kind == "http.response.zerocopysend" and not message.get("more_body", False))
        ):
            self._finish()

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect" and not self.finished:
            self.disconnected = True
        return message

    # -- the middleware's side --------------------------------------------------------
    def returned(self) -> None:
        """The app returned: a response it did not finish is a disconnect (Starlette
        stops streaming quietly when ``http.disconnect`` arrives) or an app error."""
        if self.finished:
            return
        if self.disconnected:
            self._finish_disconnected()
        elif self.status is None:
            self._finish_error("the application returned without sending a response", 500, "incomplete_response")
        else:
            self._finish_error(
                "the application returned before the response body was finished", self.status, "incomplete_response"
            )

    def raised(self, exc: BaseException) -> None:
        if self.finished:
            return
        if self.disconnected or isinstance(exc, (OSError, ClientDisconnect)):
            self._finish_disconnected()
        elif isinstance(exc, asyncio.CancelledError) or type(exc).__name__ == "Cancelled":  # asyncio / trio
            self.span.set_attribute("infratrace.cancelled", True)
            self._finish_error("the request was cancelled before the response finished", self.status, "cancelled")
        else:
            self._finish(exc)

    # -- internals --------------------------------------------------------------------
    def _start(self, message: Message) -> Message:
        try:
            options = self._setup.options
            if options.response_headers:
                headers = decode_headers(message.get("headers") or ())
                self.span.set_attributes(options.header_attributes("response", headers))
            if options.response_traceparent:
                # A copy: the headers list may belong to a Response object that is reused.
                traceparent = infratrace.format_traceparent(self.span).encode("latin-1")
                message = {**message, "headers": [*(message.get("headers") or ()), (b"traceparent", traceparent)]}
            if options.response_hook is not None:
                options.run_response_hook(self.span, self._scope, message)
        except Exception:
            pass
        return message

    def _name(self) -> None:
        span = self.span
        endpoint = self.route
        if endpoint is not None:
            # set_route(), with the name and attributes precomputed per route.
            span.name = endpoint.server_name(self._method)
            span.set_attributes(endpoint.route_attributes)
        else:
            routes = self._setup.routes
            scope_route = self._scope.get("route")
            if routes is not None and scope_route is not None:
                route = routes.template_of(scope_route)
                if route:
                    set_route(span, self._method, route)
        budget = self._budget
        if budget is not None and budget.dropped:
            report_budget(span, budget)

    def _finish(self, exc: BaseException | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        span = self.span
        try:
            endpoint = self.route
            if endpoint is not None:
                # _name() for a request that reached an endpoint (most), inlined.
                name = endpoint.server_names.get(self._method)
                span.name = name if name is not None else endpoint.server_name(self._method)
                span.set_attributes(endpoint.route_attributes)
                budget = self._budget
                if budget is not None and budget.dropped:
                    report_budget(span, budget)
            else:
                self._name()
        except Exception:
            pass
        status = self.status
        finish_http_span(span, status if status is not None or exc is None else 500, exc)

    def _finish_disconnected(self) -> None:
        self.finished = True
        span = self.span
        try:
            self._name()
            span.set_attribute("infratrace.client_disconnected", True)
            if self.status is not None:
                span.set_attribute("http.response.status_code", self.status)
            span.end(status="ok", code=CLIENT_CLOSED, message="client disconnected before the response finished")
        except Exception:
            span.end()

    def _finish_error(self, message: str, code: int | None, error_type: str) -> None:
        self.finished = True
        span = self.span
        try:
            self._name()
            if self.status is not None:
                span.set_attribute("http.response.status_code", self.status)
            span.set_attribute("error.type", error_type)
            span.end(status="error", code=code, message=message)
        except Exception:
            span.end()

    def _event(self, direction: str, kind: str, message: Message) -> None:
        try:
            attrs: dict[str, Any] = {"asgi.direction": direction}
            if "status" in message:
                attrs["http.response.status_code"] = message["status"]
            body = message.get("body")
            if body is not None:
                attrs["asgi.body.size"] = len(body)
                attrs["asgi.more_body"] = bool(message.get("more_body", False))
            self.span.add_event(kind, attrs)
        except Exception:
            pass


class RecordingHttpCycle(HttpCycle):
    """``record_messages=True``: every ASGI message also becomes an event on the span
    (a subclass, so the default wrappers test nothing for it)."""

    __slots__ = ()

    async def send(self, message: Message) -> None:
        self._event("send", message["type"], message)
        await HttpCycle.send(self, message)

    async def receive(self) -> Message:
        message = await HttpCycle.receive(self)
        self._event("receive", message["type"], message)
        return message
