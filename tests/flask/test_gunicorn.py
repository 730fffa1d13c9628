"""The example Flask app served by gunicorn on 127.0.0.1, driven over real HTTP: the
traces it writes (names, kinds, parent links, status, attributes, the client's
``traceparent`` continued, a streamed response)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..servers import BIN, TracedServer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TracedServer]:
    """gunicorn running example_apps.flask_app.app:app, writing spans to a file."""
    server = TracedServer(
        [str(BIN / "gunicorn"), "example_apps.flask_app.app:app", "-b", "127.0.0.1:{port}", "-w", "1",
         "--graceful-timeout", "5"],
        tmp_path,
    )  # fmt: skip
    yield server
    server.stop()


def test_traces_through_gunicorn(server: TracedServer) -> None:
    traceparent = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"
    status, headers, body = server.request("GET", "/users/42", {"traceparent": traceparent, "User-Agent": "it/1"})
    assert status == 200 and json.loads(b"".join(body))["id"] == 42
    status, _, chunks = server.request("GET", "/stream")
    assert status == 200 and b"".join(chunks) == b"chunk 0\nchunk 1\nchunk 2\n"
    assert server.request("GET", "/fail")[0] == 500
    assert server.request("POST", "/orders/o-9")[0] == 200
    assert server.request("GET", "/nowhere")[0] == 404
    spans = server.spans()
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_trace.setdefault(span["trace_id"], []).append(span)
    names = sorted(span["name"] for span in spans)
    assert "http:GET /health" not in names  # excluded

    # the client's trace continued: http: → web: → service: → method:
    user = {span["name"]: span for span in by_trace[TRACE_ID]}
    assert sorted(user) == [
        "http:GET /users/<int:user_id>", "method:user.fingerprint", "service:user.profile", "web:show_user",
    ]  # fmt: skip
    server_span = user["http:GET /users/<int:user_id>"]
    assert server_span["parent_span_id"] == CLIENT_SPAN
    assert server_span["kind"] == "server" and server_span["status"] == "ok"
    attrs = server_span["attributes"]
    assert attrs["http.response.status_code"] == 200
    assert attrs["server.address"] == "127.0.0.1" and attrs["server.port"] == server.port
    assert attrs["client.address"] == "127.0.0.1"
    assert attrs["user_agent.original"] == "it/1"
    assert attrs["http.request.header.user-agent"] == ["it/1"]
    assert attrs["service"] == "shop"
    assert headers["traceparent"] == f"00-{TRACE_ID}-{server_span['span_id']}-01"
    assert user["web:show_user"]["parent_span_id"] == server_span["span_id"]
    assert user["service:user.profile"]["parent_span_id"] == user["web:show_user"]["span_id"]
    assert user["method:user.fingerprint"]["parent_span_id"] == user["service:user.profile"]["span_id"]

    # the streamed response: chunk spans inside the server span, which ends last
    stream_server = next(span for span in spans if span["name"] == "http:GET /stream")
    stream = by_trace[stream_server["trace_id"]]
    chunk_spans = [span for span in stream if span["name"] == "method:stream.chunk"]
    assert len(chunk_spans) == 3
    assert all(span["parent_span_id"] == stream_server["span_id"] for span in chunk_spans)
    assert stream_server["end_time_unix_nano"] >= max(span["end_time_unix_nano"] for span in chunk_spans)

    failed = next(span for span in spans if span["name"] == "http:GET /fail")
    assert (failed["status"], failed["status_code"]) == ("error", 500)
    assert failed["status_message"] == "RuntimeError: the payment backend is down"

    order = next(span for span in spans if span["name"] == "http:POST /orders/<order_id>")
    event = next(span for span in by_trace[order["trace_id"]] if span["name"] == "event:order-placed")
    mail = next(span for span in by_trace[order["trace_id"]] if span["name"] == "method:mail.send")
    assert mail["parent_span_id"] == event["span_id"]
    assert event["attributes"]["event.receiver"].endswith("send_confirmation")

    missing = next(span for span in spans if span["name"] == "http:GET")
    assert (missing["status"], missing["status_code"]) == ("ok", 404)
