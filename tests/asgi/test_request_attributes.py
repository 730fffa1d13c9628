"""The adapter builds the http: span's attributes from a per-middleware cache of what
does not change between requests; they must equal ``request_attributes()`` exactly
(order included), per request, and the cache must never leak one request's values."""

from __future__ import annotations

import asyncio
from typing import Any

from infratrace_asgi import TraceMiddleware

import infratrace
from infratrace.instrumentation import request_attributes


def _scope(path: str, client: Any, agent: bytes | None, host: bytes | None) -> dict[str, Any]:
    headers = [(b"accept", b"*/*")]
    if host is not None:
        headers.append((b"host", host))
    if agent is not None:
        headers.append((b"user-agent", agent))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "query_string": b"",
        "headers": headers,
        "client": client,
        "server": ["10.0.0.1", 9000],  # some servers send a list
    }


def test_http_attributes_equal_request_attributes_per_request() -> None:
    seen: list[tuple[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        span = infratrace.current_span()
        assert span is not None
        seen.append((span.name, list(span.attributes.items())))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    middleware = TraceMiddleware(app, service="svc")
    cases = [
        ("/a/1", ("1.2.3.4", 1), b"ua-1", b"example.com:8080"),
        ("/b/2", ("5.6.7.8", 2), b"ua-2", b"example.com:8080"),
        ("/c/3", None, None, b"example.com:8080"),
        ("/d/4", ("9.9.9.9", 3), None, None),
        ("/e/5", ("9.9.9.8", 4), b"ua-5", None),
    ]
    for path, client, agent, host in cases:
        asyncio.run(middleware(_scope(path, client, agent, host), receive, send))
    for (name, items), (path, client, agent, host) in zip(seen, cases, strict=True):
        address, port = ("example.com", 8080) if host else ("10.0.0.1", 9000)
        expected = request_attributes(
            framework="asgi",
            method="GET",
            path=path,
            scheme="http",
            server_address=address,
            server_port=port,
            client_address=client[0] if client else None,
            user_agent=agent.decode() if agent else None,
            protocol_version="1.1",
            service="svc",
        )
        assert name == "http:GET"
        assert items == list(expected.items())
