"""Incoming baggage and propagators through the ASGI middleware, over the real
request path (Starlette's TestClient drives the app through the middleware)."""

from __future__ import annotations

import warnings
from typing import Any

from infratrace_asgi import TraceMiddleware
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import infratrace

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

TRACEPARENT = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"


async def seen(request: Request) -> JSONResponse:
    return JSONResponse({"baggage": infratrace.baggage.get_all(), "outgoing": infratrace.inject({})})


def _client() -> TestClient:
    app = Starlette(routes=[Route("/seen", seen)])
    app.add_middleware(TraceMiddleware)
    return TestClient(app)


def test_the_callers_baggage_is_the_requests_and_goes_on(span_file: Any) -> None:
    spans = span_file()
    with _client() as client:
        body = client.get("/seen", headers={"traceparent": TRACEPARENT, "baggage": "tenant=acme%20co,bad key=1"}).json()
        assert body["baggage"] == {"tenant": "acme co"}
        assert body["outgoing"]["baggage"] == "tenant=acme%20co"
        assert body["outgoing"]["traceparent"].startswith("00-" + "a" * 32)
        assert client.get("/seen").json()["baggage"] == {}  # not the next request's
    assert infratrace.baggage.get_all() == {}
    server = next(s for s in spans.spans() if s["kind"] == "server")
    assert "baggage" not in str(server["attributes"])  # baggage is never written into spans by itself


def test_propagators_off_ignore_the_callers_context(span_file: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("OTEL_PROPAGATORS", "none")
    spans = span_file()
    with _client() as client:
        body = client.get("/seen", headers={"traceparent": TRACEPARENT, "baggage": "tenant=acme"}).json()
    assert body == {"baggage": {}, "outgoing": {}}
    (server,) = [s for s in spans.spans() if s["kind"] == "server"]
    assert server["trace_id"] != "a" * 32 and server["parent_span_id"] == ""
