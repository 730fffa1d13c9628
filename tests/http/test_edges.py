"""Two instrumented layers (requests over urllib3), another instrumentation wrapped
over ours, concurrent asyncio requests, and URLs the instrumentation must survive:
no host, an IPv6 literal, a Unix socket (httpx's ``uds`` transport and an
``http+unix://`` requests adapter)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import infratrace_http.httpx
import infratrace_http.requests
import infratrace_http.urllib
import infratrace_http.urllib3
import pytest
import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool

import infratrace

from .conftest import Peer
from .test_clients import client_spans, traceparent


@pytest.fixture
def all_on() -> Iterator[None]:
    modules = (infratrace_http.httpx, infratrace_http.requests, infratrace_http.urllib3, infratrace_http.urllib)
    for module in modules:
        module.instrument()
    yield
    for module in modules:
        module.uninstrument()


def test_requests_over_urllib3_is_one_span(all_on: None, peer: Peer, span_file: Any) -> None:
    out = span_file()
    with infratrace.begin("service:x"):
        requests.get(f"{peer.base}/ok", timeout=10)
        urllib3.request("GET", f"{peer.base}/alone")  # urllib3 by itself is still traced
    first, second = client_spans(out.spans())
    assert peer.received[0].header("traceparent") == traceparent(first)
    assert peer.received[1].header("traceparent") == traceparent(second)
    assert first["parent_span_id"] == second["parent_span_id"] != ""


def test_requests_retries_and_redirects_stay_one_span_with_urllib3_on(all_on: None, peer: Peer, span_file: Any) -> None:
    out = span_file()
    with infratrace.begin("service:x"):
        assert requests.get(f"{peer.base}/redirect", timeout=10).status_code == 200
    (span,) = client_spans(out.spans())
    assert [r.header("traceparent") for r in peer.received] == [traceparent(span)] * 2


def test_an_instrumentation_wrapped_over_ours(peer: Peer, span_file: Any) -> None:
    """OpenTelemetry's requests instrumentation installed after ours: uninstrumenting
    ours leaves theirs working (ours passes through underneath), instrumenting again
    switches ours back on without wrapping twice."""
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    out = span_file()
    infratrace_http.requests.instrument()
    otel = RequestsInstrumentor()
    otel.instrument()
    try:
        infratrace_http.requests.uninstrument()
        with infratrace.begin("service:x"):
            assert requests.get(f"{peer.base}/ok", timeout=10).status_code == 200
        assert client_spans(out.spans()) == []
        infratrace_http.requests.instrument()
        with infratrace.begin("service:x"):
            assert requests.get(f"{peer.base}/ok", timeout=10).status_code == 200
        assert len(client_spans(out.spans())) == 1
    finally:
        otel.uninstrument()
        infratrace_http.requests.uninstrument()
    assert requests.Session.send.__module__ == "requests.sessions", "the original is back"


def test_concurrent_async_requests_each_carry_their_own_span(peer: Peer, span_file: Any) -> None:
    out = span_file()
    infratrace_http.httpx.instrument()

    async def one(client: httpx.AsyncClient, index: int) -> None:
        with infratrace.begin(f"service:task{index}"):
            await client.get(f"{peer.base}/ok?n={index}")

    async def main() -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            await asyncio.gather(*(one(client, index) for index in range(8)))

    try:
        asyncio.run(main())
    finally:
        infratrace_http.httpx.uninstrument()
    spans = out.spans()
    parents = {span["span_id"]: span["name"] for span in spans if span["name"].startswith("service:")}
    sent = {r.path: r.header("traceparent") for r in peer.received}
    for span in client_spans(spans):
        index = parents[span["parent_span_id"]].removeprefix("service:task")
        assert span["attributes"]["url.full"].endswith(f"/ok?n={index}")
        assert sent[f"/ok?n={index}"] == traceparent(span)
    assert len(client_spans(spans)) == 8


def _error_of(call: Any) -> type[BaseException] | None:
    try:
        call()
    except Exception as exc:
        return type(exc)
    return None


def test_no_host(span_file: Any) -> None:
    """``http:///x``: requests and urllib refuse it before anything is sent (no span);
    httpx hands it to its transport as a relative URL, which refuses it: an error span
    named ``client:GET``. Every library raises the error it raises untraced."""
    out = span_file()
    calls = [
        lambda: httpx.get("http:///x"),
        lambda: requests.get("http:///x", timeout=5),
        lambda: urllib.request.urlopen("http:///x", timeout=5),
    ]
    untraced = [_error_of(call) for call in calls]
    assert untraced == [httpx.UnsupportedProtocol, requests.exceptions.InvalidURL, urllib.error.URLError]
    modules = (infratrace_http.httpx, infratrace_http.requests, infratrace_http.urllib)
    for module in modules:
        module.instrument()
    try:
        with infratrace.begin("service:x"):
            assert [_error_of(call) for call in calls] == untraced
    finally:
        for module in modules:
            module.uninstrument()
    (span,) = client_spans(out.spans())
    assert span["name"] == "client:GET" and span["status"] == "error"
    assert span["attributes"] == {
        "http.request.method": "GET",
        "url.full": "/x",
        "error.type": "UnsupportedProtocol",
    }


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_literal(all_on: None, span_file: Any) -> None:
    out = span_file()
    peer = Peer("::1")
    try:
        with infratrace.begin("service:x"):
            assert httpx.get(f"{peer.base}/a").status_code == 200
            assert requests.get(f"{peer.base}/b", timeout=10).status_code == 200
            assert urllib3.request("GET", f"{peer.base}/c").status == 200
            with urllib.request.urlopen(f"{peer.base}/d", timeout=10) as response:
                assert response.status == 200
    finally:
        peer.close()
    spans = client_spans(out.spans())
    assert len(spans) == 4
    for span, received in zip(spans, peer.received, strict=True):
        assert span["name"] == f"client:GET [::1]:{peer.port}"
        assert span["attributes"]["server.address"] == "::1" and span["attributes"]["server.port"] == peer.port
        assert span["attributes"]["url.full"] == f"http://[::1]:{peer.port}{received.path}"
        assert received.header("traceparent") == traceparent(span)


class UnixServer:
    """An HTTP server on a Unix socket: answers 200 and records the traceparent."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.traceparents: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.traceparents.append(self.headers.get("traceparent"))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def address_string(self) -> str:
                return "unix"

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(HTTPServer):
            address_family = socket.AF_UNIX

            def server_bind(self) -> None:
                self.socket.bind(self.server_address)
                self.server_name, self.server_port = "unix", 0

        self.server = Server(self.path, Handler)  # type: ignore[arg-type]
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        os.unlink(self.path)


class UnixConnection(HTTPConnection):
    def __init__(self, socket_path: str, **kwargs: Any) -> None:
        super().__init__("localhost", **kwargs)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.socket_path)
        self.sock = sock


class UnixPool(HTTPConnectionPool):
    ConnectionCls = UnixConnection  # type: ignore[assignment]

    def __init__(self, socket_path: str) -> None:
        super().__init__("localhost")
        self.socket_path = socket_path

    def _new_conn(self) -> UnixConnection:  # type: ignore[override]
        return UnixConnection(self.socket_path, timeout=10)


class UnixAdapter(HTTPAdapter):
    """``http+unix://<percent-encoded socket path>/<path>``, as requests-unixsocket does."""

    def get_connection_with_tls_context(self, request: Any, verify: Any, proxies: Any = None, cert: Any = None) -> Any:
        netloc = request.url.split("://", 1)[1].split("/", 1)[0]
        return UnixPool(urllib.parse.unquote(netloc))

    def request_url(self, request: Any, proxies: Any) -> str:
        return str(request.path_url)


def test_unix_sockets(all_on: None, span_file: Any, tmp_path: Path) -> None:
    out = span_file()
    unix = UnixServer(tmp_path / "s.sock")
    try:
        with infratrace.begin("service:x"):
            transport = httpx.HTTPTransport(uds=unix.path)
            with httpx.Client(transport=transport, timeout=10) as client:
                assert client.get("http://localhost/info").status_code == 200
            session = requests.Session()
            session.mount("http+unix://", UnixAdapter())
            encoded = urllib.parse.quote(unix.path, safe="")
            assert session.get(f"http+unix://{encoded}/info", timeout=10).status_code == 200
    finally:
        unix.close()
    through_httpx, through_requests = client_spans(out.spans())
    assert through_httpx["name"] == "client:GET localhost"
    assert through_requests["name"] == f"client:GET {unix.path}"
    assert through_requests["attributes"]["server.address"] == unix.path
    assert "server.port" not in through_requests["attributes"]
    assert unix.traceparents == [traceparent(through_httpx), traceparent(through_requests)]
