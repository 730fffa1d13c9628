"""One trace across two real services and two tracers: a Starlette app on uvicorn
traced by infratrace (calling out with httpx), and a Flask app on gunicorn traced by
OpenTelemetry (calling out with requests), each in its own process on 127.0.0.1.

1. a request into Starlette that calls Flask: infratrace ``http:`` span → its ``web:``
   span (the endpoint) → infratrace ``client:`` span → OpenTelemetry's Flask server
   span, whose parent is our client span;
2. a request into Flask that calls Starlette: OpenTelemetry's server span → its
   ``requests`` client span → infratrace ``http:`` span, whose parent is that client
   span.

Trace ids and parent ids are compared exactly, read from both services' span files."""

from __future__ import annotations

import json
import signal
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..servers import BIN, TracedServer

pytestmark = pytest.mark.slow


class Services:
    def __init__(self, starlette: TracedServer, flask: TracedServer, otel_file: Path) -> None:
        self.starlette = starlette
        self.flask = flask
        self.otel_file = otel_file

    def otel_spans(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The OpenTelemetry spans of the Flask service (written as each ends), once
        there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        while True:
            spans = [json.loads(line) for line in self.otel_file.read_text().splitlines()] if self.otel_file.exists() else []
            if len(spans) >= count:
                return spans
            assert time.monotonic() < deadline, f"{len(spans)} OpenTelemetry spans, expected {count}: {spans}"
            time.sleep(0.05)  # polling another process's file

    def infratrace_spans(self) -> list[dict[str, Any]]:
        """Stop uvicorn (its lifespan shutdown flushes) and read what it wrote."""
        assert self.starlette.stop() in (0, -signal.SIGTERM)
        return self.starlette.read()


@pytest.fixture
def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    otel_file = tmp_path / "otel-spans.jsonl"
    monkeypatch.setenv("OTEL_SPANS_FILE", str(otel_file))
    (tmp_path / "starlette").mkdir()
    (tmp_path / "flask").mkdir()
    starlette = TracedServer(
        [sys.executable, "-m", "uvicorn", "tests.http.services.starlette_service:app", "--host", "127.0.0.1",
         "--port", "{port}", "--log-level", "warning"],
        tmp_path / "starlette",
    )  # fmt: skip
    try:
        flask = TracedServer(
            [str(BIN / "gunicorn"), "tests.http.services.flask_service:app", "-b", "127.0.0.1:{port}", "-w", "1",
             "--graceful-timeout", "5"],
            tmp_path / "flask",
        )  # fmt: skip
    except BaseException:
        starlette.stop()
        raise
    yield Services(starlette, flask, otel_file)
    flask.stop()
    starlette.stop()


def _call(server: TracedServer, target: str) -> dict[str, Any]:
    status, _, body = server.request("GET", "/call?target=" + urllib.parse.quote(target, safe=""))
    assert status == 200
    answer: dict[str, Any] = json.loads(b"".join(body))
    return answer


def test_starlette_with_infratrace_calls_flask_with_opentelemetry(services: Services) -> None:
    answer = _call(services.starlette, f"{services.flask.base}/hello")
    assert answer == {"status": 200, "body": "hello from flask"}
    (otel_server,) = services.otel_spans(1)
    ours = services.infratrace_spans()
    (http,) = [span for span in ours if span["name"] == "http:GET /call"]
    (web,) = [span for span in ours if span["name"] == "web:tests.http.services.starlette_service.call"]
    (client,) = [span for span in ours if span["name"].startswith("client:")]

    assert http["parent_span_id"] == "" and http["kind"] == "server"
    assert web["trace_id"] == http["trace_id"] and web["parent_span_id"] == http["span_id"]
    assert client["name"] == f"client:GET 127.0.0.1:{services.flask.port}" and client["kind"] == "client"
    assert client["trace_id"] == http["trace_id"] and client["parent_span_id"] == web["span_id"]
    assert client["attributes"]["http.response.status_code"] == 200
    assert client["attributes"]["url.full"] == f"{services.flask.base}/hello"

    assert otel_server["name"] == "GET /hello" and otel_server["kind"] == "server"
    assert otel_server["trace_id"] == http["trace_id"]
    assert otel_server["parent_span_id"] == client["span_id"]


def test_flask_with_opentelemetry_calls_starlette_with_infratrace(services: Services) -> None:
    answer = _call(services.flask, f"{services.starlette.base}/hello")
    assert answer == {"status": 200, "body": "hello from starlette"}
    otel = services.otel_spans(2)
    (otel_server,) = [span for span in otel if span["kind"] == "server"]
    (otel_client,) = [span for span in otel if span["kind"] == "client"]
    ours = services.infratrace_spans()
    (http,) = [span for span in ours if span["name"] == "http:GET /hello"]

    assert otel_server["name"] == "GET /call" and otel_server["parent_span_id"] == ""
    assert otel_client["trace_id"] == otel_server["trace_id"]
    assert otel_client["parent_span_id"] == otel_server["span_id"]

    assert http["kind"] == "server"
    assert http["trace_id"] == otel_server["trace_id"]
    assert http["parent_span_id"] == otel_client["span_id"]
    assert not [span for span in ours if span["name"].startswith("client:")]
