"""A real server process for the tests: an example app on a free 127.0.0.1 port,
writing its spans as JSON lines to a temporary file (through ``$INFRATRACE_CONFIG``),
stopped gracefully (SIGTERM) so it flushes everything it queued."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_up() -> bool:
    """Whether the Redis the tests use answers on 127.0.0.1:6379."""
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
        return True
    except OSError:
        return False


def postgres_up() -> bool:
    """Whether the PostgreSQL the tests use (127.0.0.1:5432, database ``test``, user
    ``postgres``, trust auth) accepts a connection."""
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres", connect_timeout=3):
            return True
    except Exception:
        return False


def wait_until(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class TracedServer:
    """``argv`` may contain ``{port}``; the server must answer ``health_path``."""

    def __init__(self, argv: list[str], tmp_path: Path, health_path: str = "/health", env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.traces = tmp_path / "traces.jsonl"
        config = tmp_path / "infratrace.toml"
        config.write_text(f'[trace]\ndriver = "file"\njson = true\ntimeout = "50ms"\n[trace.setting]\noutput = "{self.traces}"\n')
        env = {**os.environ, "INFRATRACE_CONFIG": str(config), "PYTHONPATH": str(ROOT), **(env or {})}
        argv = [part.replace("{port}", str(self.port)) for part in argv]
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT
        while True:  # poll until the server answers
            try:
                self.request("GET", health_path)
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{argv[0]} did not start: {self.process.stderr.read()!r}") from None  # type: ignore[union-attr]
                time.sleep(0.05)

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
    ) -> tuple[int, dict[str, str], list[bytes]]:
        """One request; the body as the chunks the client received."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            chunks = []
            while chunk := response.read1(65536):
                chunks.append(chunk)
            return response.status, dict(response.getheaders()), chunks
        finally:
            connection.close()

    def read(self) -> list[dict[str, Any]]:
        """The spans written so far (the server keeps running)."""
        if not self.traces.exists():
            return []
        return [json.loads(line) for line in self.traces.read_text().splitlines() if line]

    def wait_for_span(self, name: str, timeout: float = 10.0) -> dict[str, Any]:
        """A span appears once the server ended it and its file connection wrote it."""
        deadline = time.monotonic() + timeout
        while True:
            found = [span for span in self.read() if span["name"] == name]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {name} span within {timeout}s")
            time.sleep(0.05)

    def stop(self) -> int | None:
        """Graceful stop; returns the exit code (uvicorn re-raises SIGTERM: -15 is clean)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            return None

    def spans(self) -> list[dict[str, Any]]:
        """Stop the server (flushing its spans) and return everything it wrote."""
        self.stop()
        return self.read()
