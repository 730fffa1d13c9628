"""infratrace's own exports are never traced: with every client library instrumented,
root spans on, an ``otlp`` connection sending to a real local receiver and a custom
driver that posts each batch with all four libraries from the connection's thread,
the only spans written are the application's, and no export carries a
``traceparent``."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import httpx
import infratrace_http
import infratrace_http.httpx
import infratrace_http.requests
import infratrace_http.urllib
import infratrace_http.urllib3
import pytest
import requests
import urllib3

import infratrace
from infratrace import ConnectionConfig, SpanData, register_driver

from ..drivers.conftest import Collector
from .conftest import Peer

MODULES = (infratrace_http.httpx, infratrace_http.requests, infratrace_http.urllib3, infratrace_http.urllib)


class Poster:
    """A driver that sends each batch to :attr:`url` with httpx, requests, urllib3 and
    urllib.request, and records the thread it ran on; with :attr:`shielded` it does so
    inside ``infratrace_http.untraced()``."""

    url: ClassVar[str] = ""
    shielded: ClassVar[bool] = False
    threads: ClassVar[list[str]] = []
    spans: ClassVar[list[str]] = []

    def __init__(self, config: ConnectionConfig) -> None:
        self.lock = threading.Lock()

    def write(self, spans: Sequence[SpanData]) -> None:
        body = json.dumps([span.name for span in spans]).encode()
        with self.lock:
            Poster.threads.append(threading.current_thread().name)
            Poster.spans.extend(span.name for span in spans)
            if Poster.shielded:
                with infratrace_http.untraced():
                    self._post(body)
            else:
                self._post(body)

    def _post(self, body: bytes) -> None:
        httpx.post(Poster.url, content=body, timeout=10)
        requests.post(Poster.url, data=body, timeout=10)
        urllib3.request("POST", Poster.url, body=body)
        with urllib.request.urlopen(urllib.request.Request(Poster.url, data=body), timeout=10) as response:
            response.read()

    def close(self) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    yield server
    server.close()


@pytest.fixture
def everything_instrumented() -> Iterator[None]:
    for module in MODULES:
        module.instrument(root_spans=True)
    yield
    for module in MODULES:
        module.uninstrument()


def _configure(tmp_path: Path, collector: Collector, peer: Peer) -> Path:
    Poster.url, Poster.threads, Poster.spans = f"{peer.base}/batch", [], []
    register_driver("test-poster", Poster)
    path = tmp_path / "spans.jsonl"
    infratrace.configure(
        f"""
[trace.file]
driver = "file"
json = true
timeout = "50ms"
[trace.file.setting]
output = "{path}"
[trace.otlp]
driver = "otlp"
timeout = "50ms"
[trace.otlp.setting]
endpoint = "{collector.url}"
encoding = "json"
[trace.poster]
driver = "test-poster"
timeout = "50ms"
"""
    )
    return path


def _wait(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)  # polling the connections' threads, which write every 50 ms


def _exported_names(collector: Collector) -> list[str]:
    names = []
    for received in collector.requests:
        for resource in json.loads(received.body)["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                names += [span["name"] for span in scope["spans"]]
    return names


def test_exports_from_the_connection_threads_are_never_traced(
    everything_instrumented: None, collector: Collector, peer: Peer, tmp_path: Path
) -> None:
    path = _configure(tmp_path, collector, peer)
    try:
        with infratrace.begin("service:checkout"):
            requests.get(f"{peer.base}/app", timeout=10)
        infratrace.trace("event:done")
        expected = sorted(["service:checkout", f"client:GET 127.0.0.1:{peer.port}", "event:done"])
        # No force_flush: the connections' own threads write (a flush would write on this one).
        _wait(lambda: sorted(_exported_names(collector)) == expected, "the otlp export")
        _wait(lambda: sorted(Poster.spans) == expected, "the poster driver")
        _wait(lambda: path.exists() and len(path.read_text().splitlines()) == 3, "the file")
        time.sleep(0.3)  # several more write intervals: a traced export would have made spans by now
        assert sorted(_exported_names(collector)) == expected
        assert sorted(Poster.spans) == expected
        assert sorted(json.loads(line)["name"] for line in path.read_text().splitlines()) == expected
    finally:
        infratrace.shutdown(5)
    assert Poster.threads and all(name.startswith("infratrace-conn-") for name in Poster.threads), Poster.threads
    assert all("traceparent" not in {key.lower() for key in received.headers} for received in collector.requests)
    batches = [received for received in peer.received if received.path == "/batch"]
    assert len(batches) == 4 * len(Poster.threads)
    assert all(received.header("traceparent") is None for received in batches)
    (app,) = [received for received in peer.received if received.path == "/app"]
    assert app.header("traceparent") is not None


def test_untraced_shields_a_driver_that_writes_on_the_flushing_thread(
    everything_instrumented: None, collector: Collector, peer: Peer, tmp_path: Path
) -> None:
    """``force_flush()`` writes on the calling thread, where root spans are allowed:
    a driver that sends over HTTP wraps its requests in ``untraced()``."""
    path = _configure(tmp_path, collector, peer)
    Poster.shielded = True
    try:
        with infratrace.begin("service:checkout"):
            pass
        for _ in range(3):
            assert infratrace.force_flush(10)
        names = [json.loads(line)["name"] for line in path.read_text().splitlines()]
        assert names == ["service:checkout"]
        assert Poster.spans == ["service:checkout"]
    finally:
        Poster.shielded = False
        infratrace.shutdown(5)
    batches = [received for received in peer.received if received.path == "/batch"]
    assert batches and all(received.header("traceparent") is None for received in batches)


def test_a_driver_writing_on_the_flushing_thread_is_not_traced_even_unshielded(
    everything_instrumented: None, collector: Collector, peer: Peer, tmp_path: Path
) -> None:
    """The pipeline says when a driver writes (``infratrace.instrumentation.in_pipeline``),
    on whatever thread: a custom driver posting with an instrumented library during
    ``force_flush()`` inside a span of the application's makes no span and sends no
    header, without ``untraced()``."""
    path = _configure(tmp_path, collector, peer)
    try:
        with infratrace.begin("service:checkout"):
            with infratrace.begin("service:inner"):
                pass
            assert infratrace.force_flush(10)  # the driver writes here, under the current span
        assert infratrace.force_flush(10)
        names = [json.loads(line)["name"] for line in path.read_text().splitlines()]
        assert sorted(names) == ["service:checkout", "service:inner"]
        assert "MainThread" in Poster.threads
    finally:
        infratrace.shutdown(5)
    batches = [received for received in peer.received if received.path == "/batch"]
    assert batches and all(received.header("traceparent") is None for received in batches)
