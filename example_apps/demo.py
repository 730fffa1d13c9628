"""The README's demo: start each example app on a real server on 127.0.0.1, send it a
few requests, then print the traces they produced as parent/child trees.

    python -m example_apps.demo            # every app
    python -m example_apps.demo flask      # only some

Each app folder has a ``demo.py`` with ``run(ctx: DemoContext)``; the servers it starts
get ``INFRATRACE_CONFIG`` = example_apps/infratrace.toml, which writes format lines to
the console and JSON lines to demo-output/traces.jsonl.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
APPS = ("core_app", "starlette_app", "flask_app", "django_app", "services", "celery_app")


class DemoContext:
    """What an app's demo step gets: where traces go and how to run servers."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.trace_file = output / "traces.jsonl"
        self.config_path = HERE / "infratrace.toml"
        self.root = ROOT
        self.env = dict(os.environ)
        self.env["INFRATRACE_CONFIG"] = str(self.config_path)
        self.env["PYTHONPATH"] = os.pathsep.join([str(ROOT), self.env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self.env["PYTHONUNBUFFERED"] = "1"
        self._processes: list[subprocess.Popen[bytes]] = []
        self._worker: subprocess.Popen[bytes] | None = None

    @staticmethod
    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    @staticmethod
    def traceparent() -> str:
        """A new caller's context, as an upstream service would send it: each demo
        request that carries one continues a trace of its own."""
        return f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"

    @staticmethod
    def log(message: str) -> None:
        print(f"\n=== {message}", flush=True)

    def start(self, argv: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a server process (stopped gracefully by ``stop_all``), with ``env``
        added to the demo's environment."""
        process = subprocess.Popen(list(argv), cwd=cwd or ROOT, env={**self.env, **(env or {})})
        self._processes.append(process)
        return process

    @staticmethod
    def wait_http(url: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).close()
                return
            except urllib.error.HTTPError:
                return  # the server answered
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} did not answer within {timeout}s") from None
                time.sleep(0.1)

    @staticmethod
    def request(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(url, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def start_worker(self) -> None:
        """One Celery worker for the whole demo, consuming the web apps' checkout tasks
        on a queue of its own (Redis at 127.0.0.1:6379)."""
        queue = f"demo-{uuid.uuid4().hex[:8]}"
        self.env["CELERY_APP_QUEUE"] = queue
        os.environ["CELERY_APP_QUEUE"] = queue  # read by example_apps.celery_app.tasks
        self._worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "--quiet", "-A", "example_apps.celery_app.tasks", "worker", "-P", "prefork",
             "-c", "2", "-Q", queue, "--without-mingle", "--without-gossip", "--without-heartbeat", "-l", "warning"],
            cwd=ROOT, env={**self.env, "INFRATRACE_SERVICE": "shop_tasks"},  # as the adapter names the tasks' spans
        )  # fmt: skip

    def stop_worker(self) -> None:
        if self._worker is not None and self._worker.poll() is None:
            self._worker.terminate()  # warm shutdown: running tasks finish, spans are flushed
            try:
                self._worker.wait(30)
            except subprocess.TimeoutExpired:
                self._worker.kill()
        self._worker = None

    def checkout(self, url: str) -> None:
        """POST to a web app's checkout route, which sends a Celery task; wait for the
        worker to finish it, so the request's trace continues into the task."""
        request = urllib.request.Request(url, data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            task_id = json.loads(response.read())["task_id"]
        from example_apps.celery_app.tasks import app as celery_app

        result = celery_app.AsyncResult(task_id)
        result.get(timeout=60, propagate=False)
        print(f"POST {url} -> task {task_id}: {result.state} {result.result}", flush=True)

    def stop_all(self) -> None:
        for process in reversed(self._processes):
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        self._processes.clear()


def main(argv: Sequence[str] | None = None) -> int:
    wanted = list(argv if argv is not None else sys.argv[1:]) or list(APPS)
    output = ROOT / "demo-output"
    output.mkdir(exist_ok=True)
    ctx = DemoContext(output)
    if ctx.trace_file.exists():
        ctx.trace_file.unlink()
    ran = []
    if any(name.startswith(w) for name in APPS[1:4] for w in wanted):
        ctx.start_worker()
    try:
        for name in APPS:
            if not any(name.startswith(w) for w in wanted):
                continue
            try:
                module = importlib.import_module(f"example_apps.{name}.demo")
            except ModuleNotFoundError as exc:
                if exc.name and exc.name.startswith(f"example_apps.{name}"):
                    continue
                raise
            ctx.log(f"{name}: starting")
            try:
                module.run(ctx)
            finally:
                ctx.stop_all()
            ran.append(name)
    finally:
        ctx.stop_all()
        ctx.stop_worker()

    from infratrace.cli import read_spans, render_trees

    spans = read_spans([ctx.trace_file]) if ctx.trace_file.exists() else []
    ctx.log(f"{len(spans)} spans from {', '.join(ran)} in {ctx.trace_file.relative_to(ROOT)} — as trees:")
    render_trees(spans, sys.stdout)
    relative = ctx.trace_file.relative_to(ROOT)
    print(f"Files: {ctx.output.relative_to(ROOT)}/ (traces.jsonl, inventory.log)")
    print(f"See them again: .venv/bin/infratrace view {relative}  ·  in a browser: .venv/bin/infratrace serve {relative}")
    return 0 if spans else 1


if __name__ == "__main__":
    sys.exit(main())
