"""The example Flask app served by gunicorn on 127.0.0.1, driven over real HTTP: the
traces it writes (names, kinds, parent links, status, attributes, the client's
``traceparent`` continued, a streamed response)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gunicorn:
    """gunicorn running example_apps.flask_app.app:app, writing spans to a file."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.traces = tmp_path / "traces.jsonl"
        config = tmp_path / "infratrace.toml"
        config.write_text(
            f'[trace]\ndriver = "file"\njson = true\ntimeout = "50ms"\n[trace.setting]\noutput = "{self.traces}"\n'
        )
        env = {**os.environ, "INFRATRACE_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
        argv = [
            str(Path(sys.executable).parent / "gunicorn"),
            "example_apps.flask_app.app:app",
            "-b", f"127.0.0.1:{self.port}",
            "-w", "1",
            "--graceful-timeout", "5",
        ]  # fmt: skip
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while True:  # poll until the server answers
            try:
                self.request("GET", "/health")
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"gunicorn did not start: {self.process.stderr.read()!r}") from None  # type: ignore[union-attr]
                time.sleep(0.05)

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], list[bytes]]:
        """One request; the body as the chunks the client received."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path, headers=headers or {})
            response = connection.getresponse()
            chunks = []
            while chunk := response.read1(65536):
                chunks.append(chunk)
            return response.status, dict(response.getheaders()), chunks
        finally:
            connection.close()

    def stop(self) -> None:
        """Graceful stop: the worker flushes every queued span at exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def spans(self) -> list[dict[str, Any]]:
        self.stop()
        return [json.loads(line) for line in self.traces.read_text().splitlines() if line]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Gunicorn]:
    server = Gunicorn(tmp_path)
    yield server
    server.stop()


def test_traces_through_gunicorn(server: Gunicorn) -> None:
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
