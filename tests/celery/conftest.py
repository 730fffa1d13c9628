"""Real workers for the Celery tests: separate processes against the real Redis broker.

One prefork (2 processes), one solo and one threads (4 threads) worker serve the whole
session, each on its own queue (unique per session, so parallel sessions never share
messages); tests send tasks from this process and read the spans of every process back
from the file driver's JSON lines (one file per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import infratrace

from ..servers import redis_up, wait_until

ROOT = Path(__file__).resolve().parents[2]
BROKER = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/5")  # as worker_app


class Spans:
    """Every span written by this process and the workers, from the JSON-lines files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def all(self) -> list[dict[str, Any]]:
        infratrace.force_flush(10)
        spans = []
        for path in sorted(self.directory.glob("*.jsonl")):
            for line in path.read_text().splitlines():
                if line.strip():
                    spans.append(json.loads(line))
        return spans

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        return [span for span in self.all() if span["trace_id"] == trace_id]

    def wait_trace(self, trace_id: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait until the trace has at least ``count`` spans (workers flush every 50 ms)."""
        return list(
            wait_until(lambda: (found := self.trace(trace_id)) and len(found) >= count and found, timeout, f"{count} spans")
        )

    def where(self, **match: Any) -> list[dict[str, Any]]:
        return [s for s in self.all() if all(s.get(k) == v or s["attributes"].get(k) == v for k, v in match.items())]


def worker_config(directory: Path, flush_interval: str = "50ms") -> Path:
    path = directory / f"worker-{flush_interval}.toml"
    path.write_text(
        f'[trace]\ndriver = "file"\njson = true\ntimeout = "{flush_interval}"\n'
        f'[trace.setting]\noutput = "{directory}/worker-{{pid}}.jsonl"\n'
    )
    return path


class Worker:
    """``celery worker`` as a real separate process."""

    def __init__(self, pool: str, queue: str, config: Path, log: Path, concurrency: int = 2) -> None:
        self.pool = pool
        self.queue = queue
        env = dict(os.environ)
        env.update(
            INFRATRACE_CONFIG=str(config),
            INFRATRACE_TEST_QUEUE=queue,
            CELERY_BROKER_URL=BROKER,
            PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        )
        argv = [sys.executable, "-m", "celery", "-A", "tests.celery.worker_app", "worker", "-P", pool,
                "-Q", queue, "-n", f"{pool}-{queue}@%h", "--without-mingle", "--without-gossip",
                "--without-heartbeat", "-l", "warning"]  # fmt: skip
        if pool != "solo":
            argv += ["-c", str(concurrency)]
        self.log = log
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()

    def stop(self, timeout: float = 30.0) -> int:
        """Warm shutdown (SIGTERM), as a process supervisor does it."""
        self.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"{self.pool} worker did not stop within {timeout}s; log: {self.log}") from None


class Session:
    def __init__(self, directory: Path, workers: dict[str, Worker]) -> None:
        self.directory = directory
        self.workers = workers
        self.spans = Spans(directory)


@pytest.fixture(scope="session")
def celery_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    if not redis_up():
        pytest.fail("Redis must listen on 127.0.0.1:6379 for the Celery tests (.ci/run starts it)")
    directory = tmp_path_factory.mktemp("celery-spans")
    config = worker_config(directory)
    tag = uuid.uuid4().hex[:8]
    workers = {
        pool: Worker(pool, f"infratrace-{pool}-{tag}", config, directory / f"{pool}.log", concurrency=concurrency)
        for pool, concurrency in (("prefork", 2), ("solo", 1), ("threads", 4))
    }
    from tests.celery import worker_app

    worker_app.instrument()
    infratrace.configure(
        f'[trace]\ndriver = "file"\njson = true\ntimeout = "50ms"\n'
        f'[trace.setting]\noutput = "{directory}/producer-{{pid}}.jsonl"\n'
    )
    session = Session(directory, workers)
    try:
        for worker in workers.values():  # ready = it ran a task from its queue
            worker_app.add.apply_async((0, 0), queue=worker.queue).get(timeout=30)
        yield session
    finally:
        for worker in workers.values():  # stop them together: each takes seconds
            worker.terminate()
        codes = {pool: worker.stop() for pool, worker in workers.items()}
        import infratrace_celery

        infratrace_celery.uninstrument()
        infratrace.shutdown(5)
    assert codes == {"prefork": 0, "solo": 0, "threads": 0}, codes


@pytest.fixture
def celery_spans(celery_session: Session) -> Iterator[Session]:
    # Other test modules reconfigure the tracer; make sure this process writes here.
    infratrace.configure(
        f'[trace]\ndriver = "file"\njson = true\ntimeout = "50ms"\n'
        f'[trace.setting]\noutput = "{celery_session.directory}/producer-{{pid}}.jsonl"\n'
    )
    from tests.celery import worker_app

    worker_app.instrument()
    yield celery_session
