"""Client disconnects and cancellation, driven at the ASGI level (a TestClient cannot
hang up mid-stream): the span must end, once, with a status that says what happened."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from infratrace_asgi import TraceMiddleware
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

WAIT = 5.0


def streaming_app() -> Starlette:
    async def endless(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first\n"
            await asyncio.Event().wait()  # a stream that never ends by itself (SSE-like)
            yield b"never\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/events/{channel}", endless)])
    app.add_middleware(TraceMiddleware)
    return app


def http_scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"example.test")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


class Connection:
    """The server side of one connection: records what the app sent."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.first_chunk = asyncio.Event()
        self.hang_up = asyncio.Event()
        self._requested = False

    async def receive(self) -> dict[str, Any]:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            self.first_chunk.set()


def test_client_disconnect_mid_stream_ends_the_span(span_file: Any) -> None:
    out = span_file()

    async def scenario() -> Connection:
        connection = Connection()
        app = streaming_app()
        task = asyncio.ensure_future(app(http_scope("/events/news"), connection.receive, connection.send))
        await asyncio.wait_for(connection.first_chunk.wait(), WAIT)
        connection.hang_up.set()
        await asyncio.wait_for(task, WAIT)  # Starlette stops streaming quietly
        return connection

    connection = asyncio.run(scenario())
    assert not any(m.get("more_body") is False for m in connection.messages if m["type"] == "http.response.body")
    spans = [span for span in out.spans() if span["name"].startswith("http:")]
    assert len(spans) == 1
    http = spans[0]
    assert http["name"] == "http:GET /events/{channel}"
    assert http["status"] == "ok" and http["status_code"] == 499
    assert http["status_message"] == "client disconnected before the response finished"
    assert http["attributes"]["infratrace.client_disconnected"] is True
    assert http["attributes"]["http.response.status_code"] == 200


def test_cancelled_request_ends_the_span_as_error_and_reraises(span_file: Any) -> None:
    out = span_file()

    async def scenario() -> None:
        connection = Connection()
        app = streaming_app()
        task = asyncio.ensure_future(app(http_scope("/events/sport"), connection.receive, connection.send))
        await asyncio.wait_for(connection.first_chunk.wait(), WAIT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, WAIT)

    asyncio.run(scenario())
    spans = out.spans()
    http = next(span for span in spans if span["name"].startswith("http:"))
    assert http["name"] == "http:GET /events/{channel}"
    assert http["status"] == "error"
    assert http["status_message"] == "the request was cancelled before the response finished"
    assert http["attributes"]["infratrace.cancelled"] is True
    web = next(span for span in spans if span["name"].startswith("web:"))
    assert web["parent_span_id"] == http["span_id"] and web["status"] == "error"


def test_app_returning_without_a_response_is_an_error(span_file: Any) -> None:
    out = span_file()

    async def silent(scope: Any, receive: Any, send: Any) -> None:
        pass

    connection = Connection()
    asyncio.run(TraceMiddleware(silent)(http_scope("/x"), connection.receive, connection.send))
    (http,) = out.spans()
    assert http["name"] == "http:GET"  # a plain ASGI app has no routes: no raw path in the name
    assert (http["status"], http["status_code"]) == ("error", 500)
    assert http["attributes"]["url.path"] == "/x"


def test_unknown_scope_types_pass_straight_through(span_file: Any) -> None:
    out = span_file()
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    async def nothing() -> dict[str, Any]:
        return {}

    async def ignore(message: Any) -> None:
        pass

    asyncio.run(TraceMiddleware(app)({"type": "custom.protocol"}, nothing, ignore))
    assert seen == ["custom.protocol"]
    assert out.spans() == []
