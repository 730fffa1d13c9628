"""Peers for the driver tests, all on 127.0.0.1 and free ports: a scripted OTLP/HTTP
collector (``http.server`` in a thread) and a real InfluxDB 1.x server (``influxd``)."""

from __future__ import annotations

import gzip
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes  # decompressed
    raw_size: int
    at: float


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class Collector:
    """An HTTP server that records every POST and answers from a script of replies
    (then ``default``)."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.script: list[Reply] = []
        self.default = Reply()
        self._cond = threading.Condition()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(size)
                body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
                with collector._cond:
                    collector.requests.append(Received(self.path, dict(self.headers.items()), body, len(raw), time.monotonic()))
                    reply = collector.script.pop(0) if collector.script else collector.default
                    collector._cond.notify_all()
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1/traces"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < count:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"expected {count} requests, got {len(self.requests)}"
                self._cond.wait(remaining)
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    yield server
    server.close()


class Influx:
    """A running ``influxd`` with its HTTP API on ``self.url``."""

    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, q: str, db: str = "") -> Any:
        params = {"q": q, "epoch": "ns"}
        if db:
            params["db"] = db
        with urllib.request.urlopen(f"{self.url}/query?{urllib.parse.urlencode(params)}", timeout=10) as resp:
            return json.loads(resp.read())

    def create_database(self, name: str) -> None:
        data = urllib.parse.urlencode({"q": f'CREATE DATABASE "{name}"'}).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=data, timeout=10) as resp:
            assert resp.status == 200

    def rows(self, db: str, measurement: str) -> list[dict[str, Any]]:
        result = self.query(f'SELECT * FROM "{measurement}"', db)["results"][0]
        rows: list[dict[str, Any]] = []
        for series in result.get("series", []):
            for values in series["values"]:
                rows.append(dict(zip(series["columns"], values, strict=True)))
        return rows

    def tag_keys(self, db: str, measurement: str) -> set[str]:
        result = self.query(f'SHOW TAG KEYS FROM "{measurement}"', db)["results"][0]
        return {row[0] for series in result.get("series", []) for row in series["values"]}

    def field_types(self, db: str, measurement: str) -> dict[str, str]:
        result = self.query(f'SHOW FIELD KEYS FROM "{measurement}"', db)["results"][0]
        return {row[0]: row[1] for series in result.get("series", []) for row in series["values"]}


INFLUXD_CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{root}/meta"
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{http}"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[logging]
  level = "error"
"""


@pytest.fixture(scope="module")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influx]:
    binary = shutil.which("influxd")
    if binary is None:
        pytest.skip("influxd is not installed (apt-get install influxdb; .ci/run installs it)")
    root: Path = tmp_path_factory.mktemp("influxd")
    http_port, rpc_port = free_port(), free_port()
    config = root / "influxd.conf"
    config.write_text(INFLUXD_CONFIG.format(root=root, rpc=rpc_port, http=http_port))
    log = open(root / "influxd.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([binary, "-config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + 20
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=1) as resp:
                    if resp.status == 204:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("influxd did not start: " + (root / "influxd.log").read_text()[-2000:])
            time.sleep(0.05)  # polling a starting server's readiness
        yield Influx(url)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
