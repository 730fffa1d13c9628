"""The Starlette example app on a real uvicorn process on 127.0.0.1: the trace of one
request through the real server, and a streamed response."""

from __future__ import annotations

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

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
START_TIMEOUT = 20.0

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            httpx.get(f"{base}/health", timeout=1.0)
            return
        except httpx.TransportError:
            if process.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {process.returncode}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"{base} did not answer within {START_TIMEOUT}s") from None
            time.sleep(0.05)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    spans = tmp_path / "spans.jsonl"
    config = tmp_path / "infratrace.toml"
    config.write_text(f'[trace]\ndriver = "file"\njson = true\ntimeout = "50ms"\n[trace.setting]\noutput = "{spans}"\n')
    port = free_port()
    env = {**os.environ, "INFRATRACE_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "example_apps.starlette_app.app:app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env=env,
    )
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", process)
        yield f"http://127.0.0.1:{port}", process, spans
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def stop(process: subprocess.Popen[bytes]) -> None:
    """A graceful stop: uvicorn runs the lifespan shutdown, where the middleware flushes."""
    process.send_signal(signal.SIGTERM)
    # uvicorn re-raises the signal after its graceful shutdown: -SIGTERM is a clean exit.
    assert process.wait(15) in (0, -signal.SIGTERM)


def read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def wait_for_span(path: Path, name: str, timeout: float = 10.0) -> dict[str, Any]:
    """The span appears once the server has ended it and the file connection (50 ms
    flush interval) has written it."""
    deadline = time.monotonic() + timeout
    while True:
        found = [span for span in read(path) if span["name"] == name]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {name} span within {timeout}s")
        time.sleep(0.05)


def test_trace_of_requests_through_uvicorn(server: tuple[str, subprocess.Popen[bytes], Path]) -> None:
    base, process, path = server
    with httpx.Client(base_url=base, timeout=10) as client:
        response = client.get("/users/1", headers={"traceparent": f"00-{TRACE}-{PARENT}-01", "user-agent": "e2e"})
        assert response.status_code == 200 and response.json()["name"] == "alice"
        returned_traceparent = response.headers["traceparent"]
        with client.stream("GET", "/report") as streamed:
            lines = [line for line in streamed.iter_lines() if line]
    stop(process)
    spans = read(path)

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


def test_client_hanging_up_on_server_sent_events(server: tuple[str, subprocess.Popen[bytes], Path]) -> None:
    base, process, path = server
    with httpx.Client(base_url=base, timeout=10) as client, client.stream("GET", "/events") as stream:
        lines = stream.iter_lines()
        assert next(lines) == "event: tick"
    # The connection is closed here, mid-stream; the server must notice and end the span.
    span = wait_for_span(path, "http:GET /events")
    assert span["status"] == "ok" and span["status_code"] == 499
    assert span["status_message"] == "client disconnected before the response finished"
    assert span["attributes"]["infratrace.client_disconnected"] is True
    assert span["attributes"]["http.response.status_code"] == 200
    assert span["duration_ms"] < 5000, "ended at the disconnect, not when the stream would have run out"
    stop(process)
