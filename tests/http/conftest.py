"""The peer the client tests call: a real HTTP/1.1 server on 127.0.0.1 and a free port
(``http.server`` in a thread), recording each request's headers; and the five clients
under test (httpx sync and async, requests, urllib3, urllib.request) behind one small
interface, so every test runs against each of them."""

from __future__ import annotations

import asyncio
import importlib
import socket
import threading
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any

import httpx
import pytest
import requests
import urllib3

from ..servers import free_port


@dataclass
class Received:
    method: str
    path: str
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key.lower() == name]
        assert len(values) <= 1, f"{name} sent {len(values)} times: {values}"
        return values[0] if values else None


class IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class Peer:
    """Answers ``/status/<code>`` with that status, ``/redirect`` with a 302 to
    ``/status/200``, ``/stream`` with its headers at once and its body only once
    :attr:`release` is set; anything else with 200 ``ok``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.received: list[Received] = []
        self.release = threading.Event()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                peer.received.append(Received(self.command, self.path, list(self.headers.items())))
                path = self.path.partition("?")[0]
                if path.startswith("/status/"):
                    self._reply(int(path.rsplit("/", 1)[1]), b"status")
                elif path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "/status/200")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif path == "/stream":
                    self.send_response(200)
                    self.send_header("Content-Length", "4")
                    self.end_headers()
                    self.wfile.flush()
                    peer.release.wait(30)
                    self.wfile.write(b"body")
                else:
                    self._reply(200, b"ok")

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _answer

            def do_PURGE(self) -> None:  # a method outside the HTTP standard
                self._answer()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = (IPv6Server if ":" in host else ThreadingHTTPServer)((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.host = host
        self.base = f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def last(self) -> Received:
        return self.received[-1]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def peer() -> Iterator[Peer]:
    server = Peer()
    yield server
    server.close()


# -- the clients ------------------------------------------------------------------------------


class Client(ABC):
    """One library: ``send`` returns the response status (urllib's ``HTTPError`` is
    turned into its status, as the other libraries return one); connection errors
    propagate as the library raises them. ``modules``: the instrumentation modules it
    needs. ``stream`` returns the response with its body not read yet and a function
    that reads it."""

    name = ""
    modules: tuple[str, ...] = ()

    @abstractmethod
    def send(self, method: str, url: str, headers: dict[str, str] | None = None) -> int: ...

    @abstractmethod
    def stream(self, url: str) -> tuple[Callable[[], bytes], Callable[[], None]]: ...

    @abstractmethod
    def close(self) -> None: ...


class HttpxSync(Client):
    name = "httpx"
    modules = ("httpx",)

    def __init__(self) -> None:
        self.client = httpx.Client(timeout=10, follow_redirects=True)

    def send(self, method: str, url: str, headers: dict[str, str] | None = None) -> int:
        return self.client.request(method, url, headers=headers).status_code

    def stream(self, url: str) -> tuple[Callable[[], bytes], Callable[[], None]]:
        response = self.client.send(self.client.build_request("GET", url), stream=True)
        return response.read, response.close

    def close(self) -> None:
        self.client.close()


class HttpxAsync(Client):
    name = "httpx-async"
    modules = ("httpx",)

    def send(self, method: str, url: str, headers: dict[str, str] | None = None) -> int:
        async def go() -> int:
            async with httpx.AsyncClient(timeout=10, follow_redirects=True) as client:
                return (await client.request(method, url, headers=headers)).status_code

        return asyncio.run(go())

    def stream(self, url: str) -> tuple[Callable[[], bytes], Callable[[], None]]:
        loop = asyncio.new_event_loop()
        client = httpx.AsyncClient(timeout=10)
        response = loop.run_until_complete(client.send(client.build_request("GET", url), stream=True))

        def close() -> None:
            loop.run_until_complete(response.aclose())
            loop.run_until_complete(client.aclose())
            loop.close()

        return lambda: loop.run_until_complete(response.aread()), close

    def close(self) -> None:
        pass  # a client per request


class Requests(Client):
    name = "requests"
    modules = ("requests",)

    def __init__(self) -> None:
        self.session = requests.Session()

    def send(self, method: str, url: str, headers: dict[str, str] | None = None) -> int:
        return self.session.request(method, url, headers=headers, timeout=10).status_code

    def stream(self, url: str) -> tuple[Callable[[], bytes], Callable[[], None]]:
        response = self.session.get(url, stream=True, timeout=10)
        return lambda: response.content, response.close

    def close(self) -> None:
        self.session.close()


class Urllib3(Client):
    name = "urllib3"
    modules = ("urllib3",)

    def __init__(self) -> None:
        self.manager = urllib3.PoolManager(timeout=10, retries=urllib3.Retry(total=None, connect=0, read=0, redirect=3))

    def send(self, method: str, url: str, headers: dict[str, str] | None = None) -> int:
        return self.manager.request(method, url, headers=headers).status

    def stream(self, url: str) -> tuple[Callable[[], bytes], Callable[[], None]]:
        response = self.manager.request("GET", url, preload_content=False)
        return response.read, response.release_conn

    def close(self) -> None:
        self.manager.clear()


class Urllib(Client):
    name = "urllib"
    modules = ("urllib",)

    def send(self, method: str, url: str, headers: dict[str, str] | None = None) -> int:
        request = urllib.request.Request(url, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
                return int(response.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return exc.code

    def stream(self, url: str) -> tuple[Callable[[], bytes], Callable[[], None]]:
        response = urllib.request.urlopen(url, timeout=10)
        return response.read, response.close

    def close(self) -> None:
        pass  # a connection per request


CLIENTS: dict[str, type[Client]] = {cls.name: cls for cls in (HttpxSync, HttpxAsync, Requests, Urllib3, Urllib)}


def instrumentation(name: str) -> ModuleType:
    return importlib.import_module(f"infratrace_http.{name}")


@pytest.fixture(params=list(CLIENTS))
def client(request: pytest.FixtureRequest) -> Iterator[Client]:
    made = CLIENTS[request.param]()
    yield made
    made.close()


@pytest.fixture
def instrument(client: Client) -> Iterator[Callable[..., None]]:
    """``instrument(**options)``: the client's instrumentation on, with these options;
    undone after the test (so no other test sees it)."""
    used: list[ModuleType] = []

    def on(**options: Any) -> None:
        for name in client.modules:
            module = instrumentation(name)
            module.instrument(**options)
            used.append(module)

    yield on
    for module in used:
        module.uninstrument()


@pytest.fixture(autouse=True)
def _nothing_left_instrumented() -> Iterator[None]:
    yield
    for name in ("httpx", "requests", "urllib3", "urllib"):
        module = instrumentation(name)
        assert not module.is_instrumented(), f"infratrace_http.{name} left instrumented"


def unused_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/refused"
