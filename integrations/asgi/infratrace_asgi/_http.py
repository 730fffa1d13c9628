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
from infratrace import SpanBudget
from infratrace.web import (
    WebOptions,
    finish_http_span,
    http_span_name,
    report_budget,
    request_attributes,
    set_route,
)

from ._routes import RouteTable

__all__ = ["HttpCycle", "parse_request"]

AnySpan = infratrace.Span | infratrace.NonRecordingSpan
CLIENT_CLOSED = 499  # nginx's "client closed request": the span's code on a disconnect


def parse_request(
    scope: Scope, options: WebOptions, method: str
) -> tuple[dict[str, Any], infratrace.SpanContext | None]:
    """Attributes of the request (OTel semconv + the seed's) and the remote parent from
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
    parent = None
    if traceparent:
        # What infratrace.extract() does, minus its case-insensitive header lookup:
        # ASGI servers already lower-case header names.
        try:
            parent = infratrace.parse_traceparent(
                traceparent.decode("latin-1"), tracestate.decode("latin-1") if tracestate else ""
            )
        except Exception:
            parent = None
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


def decode_headers(headers: Any) -> list[tuple[str, str]]:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]


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


class HttpCycle:
    """State of one request; ``send``/``receive`` are handed to the app in place of the
    server's. The span ends at the last body chunk (``more_body`` false), or when the
    app returns, raises, is cancelled or the client goes away before that."""

    __slots__ = (
        "_budget",
        "_method",
        "_options",
        "_receive",
        "_record",
        "_routes",
        "_scope",
        "_send",
        "_start_work",
        "_trailers",
        "disconnected",
        "finished",
        "route",
        "span",
        "status",
    )

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        options: WebOptions,
        routes: RouteTable | None,
        record_messages: bool,
    ) -> None:
        method = scope.get("method") or "GET"
        attrs, parent = parse_request(scope, options, method)
        self.span: AnySpan = infratrace.start_span(http_span_name(method, None), attrs, kind="server", parent=parent)
        self.route: str | None = None
        self.status: int | None = None
        self.finished = False
        self.disconnected = False
        self._trailers = False
        self._method = method
        self._scope = scope
        self._send = send
        self._receive = receive
        self._options = options
        self._routes = routes
        self._record = record_messages
        self._start_work = bool(options.response_headers or options.response_traceparent or options.response_hook)
        # Activated in the middleware's context (this runs there), and deactivated there
        # by end_budget(): the span itself may end in another task.
        self._budget: SpanBudget | None = options.new_budget()
        if options.request_hook is not None:
            options.run_request_hook(self.span, scope)

    def end_budget(self) -> None:
        if self._budget is not None:
            self._budget.deactivate()

    # -- the app's side ---------------------------------------------------------------
    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self._record:
            self._event("send", kind, message)
        if kind == "http.response.body":
            await self._send(message)
            if not message.get("more_body", False) and not self._trailers:
                self._finish()
            return
        if kind == "http.response.start":
            self.status = message.get("status")
            self._trailers = message.get("trailers", False)
            if self._start_work:
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
        if self._record:
            self._event("receive", message["type"], message)
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
            options = self._options
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
        route = self.route
        if route is None:
            routes = self._routes
            scope_route = self._scope.get("route")
            if routes is not None and scope_route is not None:
                route = routes.template_of(scope_route)
        if route:
            set_route(span, self._method, route)
        report_budget(span, self._budget)

    def _finish(self, exc: BaseException | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        try:
            self._name()
        except Exception:
            pass
        finish_http_span(self.span, self.status if self.status is not None or exc is None else 500, exc)

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
