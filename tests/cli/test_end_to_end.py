"""A web app's and a Celery worker's files, written by the real example apps (the
Starlette shop on uvicorn, the shop's tasks on a prefork worker, Redis between them),
viewed together: one tree per trace, from the request to the task."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..servers import free_port, redis_up
from .conftest import ROOT, run_module, table_rows

pytestmark = pytest.mark.slow


class Shop:
    """The web app and the worker, each with its own configuration and file."""

    def __init__(self, directory: Path) -> None:
        self.web = directory / "web.jsonl"
        self.worker = directory / "worker.jsonl"
        self.port = free_port()
        queue = f"viewer-{uuid.uuid4().hex[:8]}"
        self.processes: list[subprocess.Popen[bytes]] = []
        for name, argv in (
            (
                "worker",
                [sys.executable, "-m", "celery", "--quiet", "-A", "example_apps.celery_app.tasks", "worker", "-P", "prefork",
                 "-c", "1", "-Q", queue, "--without-mingle", "--without-gossip", "--without-heartbeat", "-l", "warning"],
            ),
            (
                "web",
                [sys.executable, "-m", "uvicorn", "example_apps.starlette_app.app:app", "--host", "127.0.0.1",
                 "--port", str(self.port), "--log-level", "warning"],
            ),
        ):  # fmt: skip
            config = directory / f"{name}.toml"
            config.write_text(
                f'[infratrace]\nproject = "shop"\n[trace]\ndriver = "file"\njson = true\ntimeout = "50ms"\n'
                f'[trace.setting]\noutput = "{directory / (name + ".jsonl")}"\n'
            )
            env = {**os.environ, "INFRATRACE_CONFIG": str(config), "PYTHONPATH": str(ROOT), "CELERY_APP_QUEUE": queue}
            self.processes.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.queue = queue
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                    self.stop()
                    raise RuntimeError("the shop did not start") from None
                time.sleep(0.1)

    def checkout(self, order: int) -> str:
        """POST a checkout and wait until the worker has written its task's last span;
        the trace id."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/checkout/{order}", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            trace_id = str(response.headers["traceparent"].split("-")[1])
            assert response.status == 202
        deadline = time.monotonic() + 60
        while not self._written(trace_id, "queue:shop.process_order"):
            assert time.monotonic() < deadline, "the worker never wrote the task's span"
            time.sleep(0.05)
        return trace_id

    def _written(self, trace_id: str, name: str) -> bool:
        try:
            lines = self.worker.read_text().splitlines()
        except FileNotFoundError:
            return False
        return any((r := json.loads(line))["trace_id"] == trace_id and r["name"] == name for line in lines if line.endswith("}"))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # graceful: every span written
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    if not redis_up():
        pytest.skip("the Celery worker needs Redis on 127.0.0.1:6379")
    started = Shop(tmp_path)
    try:
        yield started
    finally:
        started.stop()


def test_the_request_and_its_task_are_one_tree(shop: Shop) -> None:
    trace_id = shop.checkout(501)
    shop.stop()
    result = run_module("view", shop.web, shop.worker, "--trace", trace_id, "--width", "160")
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    rows = table_rows(out, trace_id)
    assert [r["name"] for r in rows] == [
        "http:POST /checkout/{order_id:int} server 202",
        "└─ web:example_apps.starlette_app.app.checkout",
        "   └─ queue:shop.process_order producer",
        "      └─ queue:shop.process_order consumer",
        "         └─ service:orders.confirm",
        "            └─ method:inventory.reserve",
    ]
    web_pid, worker_pid = rows[0]["pid"], rows[3]["pid"]
    assert web_pid != worker_pid
    assert [r["pid"] for r in rows] == [web_pid] * 3 + [worker_pid] * 3
    assert all("parent not in these files" not in r["name"] for r in rows)
    # Each process's file alone shows its part; the worker's part without its parent.
    alone = run_module("view", shop.worker, "--trace", trace_id, "--width", "160").stdout.decode()
    assert table_rows(alone, trace_id)[0]["name"] == "queue:shop.process_order consumer (parent not in these files)"
