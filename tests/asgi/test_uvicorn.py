"""The Starlette example app on a real uvicorn process on 127.0.0.1: the trace of one
request through the real server, and a streamed response."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..servers import TracedServer

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TracedServer]:
    server = TracedServer(
        [sys.executable, "-m", "uvicorn", "example_apps.starlette_app.app:app", "--host", "127.0.0.1",
         "--port", "{port}", "--log-level", "warning"],
        tmp_path,
    )  # fmt: skip
    yield server
    server.stop()


def stop(server: TracedServer) -> None:
    """A graceful stop: uvicorn runs the lifespan shutdown, where the middleware flushes."""
    # uvicorn re-raises the signal after its graceful shutdown: -SIGTERM is a clean exit.
    assert server.stop() in (0, -signal.SIGTERM)


def test_trace_of_requests_through_uvicorn(server: TracedServer) -> None:
    base = server.base
    with httpx.Client(base_url=base, timeout=10) as client:
        response = client.get("/users/1", headers={"traceparent": f"00-{TRACE}-{PARENT}-01", "user-agent": "e2e"})
        assert response.status_code == 200 and response.json()["name"] == "alice"
        returned_traceparent = response.headers["traceparent"]
        with client.stream("GET", "/report") as streamed:
            lines = [line for line in streamed.iter_lines() if line]
    stop(server)
    spans = server.read()

    request = [span for span in spans if span["trace_id"] == TRACE]
    by_name = {span["name"]: span for span in request}
    assert sorted(by_name) == sorted(
        [
            "http:GET /users/{user_id:int}",
            "web:example_apps.starlette_app.app.user",
            "service:user.profile",
            "method:user.hash",
            "event:user.profile.read",
        ]
    )
    http = by_name["http:GET /users/{user_id:int}"]
    web = by_name["web:example_apps.starlette_app.app.user"]
    service = by_name["service:user.profile"]
    assert (http["kind"], web["kind"], service["kind"]) == ("server", "internal", "internal")
    assert http["parent_span_id"] == PARENT, "traceparent continued from the client"
    assert web["parent_span_id"] == http["span_id"]
    assert service["parent_span_id"] == web["span_id"]
    assert by_name["method:user.hash"]["parent_span_id"] == service["span_id"]
    assert http["status"] == "ok" and http["status_code"] == 200
    attrs = http["attributes"]
    port = int(base.rsplit(":", 1)[1])
    assert attrs["http.request.method"] == "GET" and attrs["http.route"] == "/users/{user_id:int}"
    assert attrs["url.path"] == "/users/1" and attrs["url.scheme"] == "http"
    assert attrs["http.response.status_code"] == 200
    assert (attrs["server.address"], attrs["server.port"]) == ("127.0.0.1", port)
    assert attrs["client.address"] == "127.0.0.1" and attrs["user_agent.original"] == "e2e"
    assert returned_traceparent == f"00-{TRACE}-{http['span_id']}-01"

    (report,) = [span for span in spans if span["name"] == "http:GET /report"]
    last_line_ns = int(lines[-1].split()[-1])
    assert len(lines) == 3
    assert report["end_time_unix_nano"] >= last_line_ns, "the span ended before the last chunk"
    assert report["duration_ms"] >= 40, "three chunks 20 ms apart"

    names = [span["name"] for span in spans]
    assert "event:lifespan.startup" in names and "event:lifespan.shutdown" in names
    assert not any("/health" in name for name in names), "excluded path"


def test_client_hanging_up_on_server_sent_events(server: TracedServer) -> None:
    base = server.base
    with httpx.Client(base_url=base, timeout=10) as client, client.stream("GET", "/events") as stream:
        lines = stream.iter_lines()
        assert next(lines) == "event: tick"
    # The connection is closed here, mid-stream; the server must notice and end the span.
    span = server.wait_for_span("http:GET /events")
    assert span["status"] == "ok" and span["status_code"] == 499
    assert span["status_message"] == "client disconnected before the response finished"
    assert span["attributes"]["infratrace.client_disconnected"] is True
    assert span["attributes"]["http.response.status_code"] == 200
    assert span["duration_ms"] < 5000, "ended at the disconnect, not when the stream would have run out"
    stop(server)
