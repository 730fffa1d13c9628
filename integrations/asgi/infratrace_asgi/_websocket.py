"""One WebSocket connection: an ``http:WEBSOCKET <route>`` server span for its whole
life, from the handshake until the app returns, with the close code recorded."""

from __future__ import annotations

from starlette.types import Message, Receive, Scope, Send

import infratrace
from infratrace.instrumentation import (
    AnySpan,
    SpanBudget,
    WebOptions,
    finish_http_span,
    report_budget,
    set_route,
    websocket_span_name,
)

from ._http import parse_request, request_baggage
from ._routes import EndpointSpan, RouteTable

__all__ = ["WebSocketCycle", "websocket_span_name"]

ERROR_CLOSE_CODES = frozenset({1011, 1014})  # internal error, bad gateway


class WebSocketCycle:
    __slots__ = (
        "_budget",
        "_options",
        "_receive",
        "_routes",
        "_scope",
        "_send",
        "baggage",
        "close_code",
        "closed_by",
        "route",
        "span",
        "status",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send, options: WebOptions, routes: RouteTable | None) -> None:
        attrs, parent = parse_request(scope, options, "GET")  # the handshake is a GET
        attrs["network.protocol.name"] = "websocket"
        self.span: AnySpan = infratrace.start_span(websocket_span_name(None), attrs, kind="server", parent=parent)
        self.baggage = request_baggage(scope["headers"])
        self.route: EndpointSpan | None = None  # set by the route's EndpointSpan
        self.status: int | None = None
        self.close_code: int | None = None
        self.closed_by = ""
        self._scope = scope
        self._send = send
        self._receive = receive
        self._routes = routes
        self._options = options
        self._budget: SpanBudget | None = options.new_budget()
        if options.request_hook is not None:
            options.run_request_hook(self.span, scope)

    def end_budget(self) -> None:
        if self._budget is not None:
            self._budget.deactivate()

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.accept":
            self.status = 101
            if self._options.response_traceparent:
                traceparent = infratrace.format_traceparent(self.span).encode("latin-1")
                message = {**message, "headers": [*(message.get("headers") or ()), (b"traceparent", traceparent)]}
        elif kind == "websocket.close":
            if self.close_code is None:
                self.close_code = message.get("code", 1000)
                self.closed_by = "server"
            if self.status is None:  # closed before the handshake: the server answers 403
                self.status = 403
        elif kind == "websocket.http.response.start":
            self.status = message["status"]
        await self._send(message)

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "websocket.disconnect" and self.close_code is None:
            self.close_code = message.get("code", 1005)
            self.closed_by = "client"
        return message

    def end(self, exc: BaseException | None) -> None:
        span = self.span
        try:
            route = self.route.template if self.route is not None else None
            if route is None and self._routes is not None and self._scope.get("route") is not None:
                route = self._routes.template_of(self._scope["route"])
            if route:
                set_route(span, "GET", route, websocket=True)
            if self.close_code is not None:
                span.set_attribute("websocket.close.code", self.close_code)
                span.set_attribute("websocket.closed_by", self.closed_by)
            report_budget(span, self._budget)
            if exc is None and self.close_code in ERROR_CLOSE_CODES:
                span.set_attribute("http.response.status_code", self.status or 101)
                span.end(status="error", code=self.close_code, message=f"WebSocket closed with code {self.close_code}")
                return
        except Exception:
            pass
        finish_http_span(span, self.status if self.status is not None or exc is None else 500, exc)
