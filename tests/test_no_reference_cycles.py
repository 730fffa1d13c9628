"""A traced request leaves no reference cycle for the garbage collector: what the
adapters keep per request (the ASGI scope and its request state, the span budget and
the request's context) is freed by reference counting, as the untraced request is."""

from __future__ import annotations

import asyncio
import gc
import io
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import infratrace


@pytest.fixture(autouse=True)
def _tracer() -> Iterator[None]:
    infratrace.configure('[trace]\ndriver = "discard"')
    yield
    infratrace.shutdown()


def _garbage_per_request(run: Callable[[], None], requests: int = 300) -> float:
    for _ in range(50):
        run()
    gc.collect()
    gc.disable()
    try:
        for _ in range(requests):
            run()
        return gc.collect() / requests
    finally:
        gc.enable()


def test_asgi_requests_leave_no_cycles() -> None:
    from infratrace_asgi import TraceMiddleware
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hello")

    def app(traced: bool) -> Any:
        made = Starlette(routes=[Route("/hello", hello)])
        if traced:
            made.add_middleware(TraceMiddleware)
        return made

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/hello", "raw_path": b"/hello", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    loop = asyncio.new_event_loop()
    try:
        bare, traced = app(False), app(True)
        baseline = _garbage_per_request(lambda: loop.run_until_complete(bare(dict(scope), receive, send)))
        with_tracing = _garbage_per_request(lambda: loop.run_until_complete(traced(dict(scope), receive, send)))
    finally:
        loop.close()
    assert with_tracing <= baseline


def test_flask_requests_leave_no_cycles() -> None:
    from flask import Flask
    from infratrace_flask import InfraTrace

    def app(traced: bool) -> Any:
        made = Flask("cycles")
        made.add_url_rule("/hello", "hello", lambda: "hello")
        if traced:
            made.config["INFRATRACE"] = '[trace]\ndriver = "discard"'
            InfraTrace(made)
        return made

    def call(wsgi: Any) -> None:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/hello", "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
                   "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
                   "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr}  # fmt: skip
        body = wsgi(environ, lambda status, headers, exc_info=None: None)
        for _ in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()

    bare, traced = app(False), app(True)
    baseline = _garbage_per_request(lambda: call(bare))  # Flask leaves a few of its own
    assert _garbage_per_request(lambda: call(traced)) <= baseline
