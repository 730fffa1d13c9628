"""The example app on real servers on 127.0.0.1 — gunicorn (WSGI) and uvicorn (ASGI) —
and the trace of one request each, read back from the JSON-lines file the server wrote."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..servers import BIN, TracedServer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"

pytestmark = pytest.mark.slow


def get(server: TracedServer, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    status, response_headers, chunks = server.request("GET", path, headers)
    return status, {name.lower(): value for name, value in response_headers.items()}, b"".join(chunks)


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[TracedServer]:
    server = TracedServer(
        [str(BIN / "gunicorn"), "--bind", "127.0.0.1:{port}", "--workers", "1", "example_apps.django_app.wsgi:application"],
        tmp_path,
        health_path="/health/",
    )
    yield server
    server.stop()


@pytest.fixture
def uvicorn(tmp_path: Path) -> Iterator[TracedServer]:
    server = TracedServer(
        [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}", "example_apps.django_app.asgi:application"],
        tmp_path,
        health_path="/health/",
    )
    yield server
    server.stop()


def tree(spans: list[dict[str, Any]], trace_id: str) -> dict[str, dict[str, Any]]:
    return {span["name"]: span for span in spans if span["trace_id"] == trace_id}


def test_gunicorn_wsgi_trace_of_one_request(gunicorn: TracedServer) -> None:
    status, headers, body = get(
        gunicorn,
        "/orders/42/",
        {"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01", "x-request-id": "req-42"},
    )
    assert status == 200 and json.loads(body)["id"] == 42
    assert get(gunicorn, "/fail/")[0] == 500
    spans = gunicorn.spans()
    names = tree(spans, TRACE_ID)
    http = names["http:GET orders/<int:order_id>/"]
    web = names["web:example_apps.django_app.views.order"]
    service = names["service:orders.place"]
    method = names["method:orders.checksum"]
    event = names["event:order_placed"]
    assert http["parent_span_id"] == CLIENT_SPAN and http["kind"] == "server"
    assert web["parent_span_id"] == http["span_id"] and web["kind"] == "internal"
    assert service["parent_span_id"] == web["span_id"]
    assert method["parent_span_id"] == service["span_id"]
    assert event["parent_span_id"] == service["span_id"]
    assert event["attributes"]["django.signal.receiver"] == "example_apps.django_app.services.notify_warehouse"
    assert all(span["status"] == "ok" for span in names.values())
    attrs = http["attributes"]
    assert attrs["http.route"] == "orders/<int:order_id>/" and attrs["url.path"] == "/orders/42/"
    assert attrs["http.response.status_code"] == 200 and attrs["server.port"] == gunicorn.port
    assert attrs["client.address"] == "127.0.0.1" and attrs["server.address"] == "127.0.0.1"
    assert attrs["http.request.header.x-request-id"] == ["req-42"] and attrs["service"] == "django-shop"
    assert headers["traceparent"] == f"00-{TRACE_ID}-{http['span_id']}-01"
    failed = next(span for span in spans if span["name"] == "http:GET fail/")
    assert failed["status"] == "error" and failed["status_message"] == "RuntimeError: payment backend unreachable"
    assert not [span for span in spans if "health" in span["name"]]


def test_uvicorn_asgi_async_view_and_async_stream(uvicorn: TracedServer) -> None:
    status, headers, _ = get(uvicorn, "/async/", {"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"})
    assert status == 200
    status, _, body = get(uvicorn, "/ticker/")
    assert body == b"tick 0\ntick 1\ntick 2\n"
    spans = uvicorn.spans()
    names = tree(spans, TRACE_ID)
    http = names["http:GET async/"]
    assert http["parent_span_id"] == CLIENT_SPAN
    assert headers["traceparent"] == f"00-{TRACE_ID}-{http['span_id']}-01"
    assert names["web:example_apps.django_app.views.async_hello"]["parent_span_id"] == http["span_id"]
    ticker = next(span for span in spans if span["name"] == "http:GET ticker/")
    # ended when the body was sent (3 ticks of 10 ms), not when the view returned
    assert ticker["duration_ms"] >= 25 and ticker["status"] == "ok"
