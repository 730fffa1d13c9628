"""Real programs started with ``infratrace-run`` (``python -m infratrace.auto.run``,
the console script's ``main``), in a temporary working directory holding the
``infratrace.toml`` they find for themselves: JSON lines to ``traces.jsonl`` there."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from ..servers import wait_until

APPS = Path(__file__).resolve().parent / "apps"
BIN = Path(sys.executable).parent
RUN = [sys.executable, "-m", "infratrace.auto.run"]
CONFIG = '[trace]\ndriver = "file"\njson = true\ntimeout = "50ms"\n[trace.setting]\noutput = "traces.jsonl"\n'


class Program:
    """``infratrace-run <argv>`` in ``workdir`` (its own process group)."""

    def __init__(self, argv: list[str], workdir: Path, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port
        self.stderr_path = workdir / f"stderr-{len(list(workdir.glob('stderr-*')))}.txt"
        environ = {key: value for key, value in os.environ.items() if not key.startswith(("INFRATRACE_", "OTEL_"))}
        environ.update({"PYTHONPATH": str(APPS), "PYTHONUNBUFFERED": "1", **(env or {})})
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [*RUN, *argv], cwd=workdir, env=environ, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
            )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def request(self, path: str) -> tuple[int, bytes]:
        assert self.port is not None
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def wait_ready(self, path: str = "/health", timeout: float = 30.0) -> None:
        """Poll until one request succeeds: that request is served (and traced) once."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, _ = self.request(path)
                assert status == 200, status
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"the program did not start:\n{self.stderr}") from None
                time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


def read_spans(workdir: Path) -> list[dict[str, Any]]:
    path = workdir / "traces.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def by_trace(spans: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    traces: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        traces[span["trace_id"]].append(span)
    return dict(traces)


def request_traces(workdir: Path, expected: int, timeout: float = 20.0) -> dict[str, list[dict[str, Any]]]:
    """The traces whose root is an ``http:`` span, once there are ``expected`` of them
    (and the file has stopped growing for a moment: no late duplicate is missed)."""

    def http_traces() -> dict[str, list[dict[str, Any]]]:
        return {
            trace_id: spans
            for trace_id, spans in by_trace(read_spans(workdir)).items()
            if any(span["name"].startswith("http:") and not span["parent_span_id"] for span in spans)
        }

    wait_until(lambda: len(http_traces()) >= expected, timeout, f"{expected} request traces")
    time.sleep(0.5)
    return http_traces()


def names(spans: list[dict[str, Any]]) -> list[str]:
    return sorted(span["name"] for span in spans)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "infratrace.toml").write_text(CONFIG)
    return tmp_path
