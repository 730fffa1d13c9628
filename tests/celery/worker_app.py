"""The Celery app the integration tests run in a real worker process (and send tasks
from, in the test process). Broker, queue and result backend come from the
environment so each test session uses its own Redis database and queues."""

from __future__ import annotations

import os
import threading
from typing import Any

import infratrace_celery
from celery import Celery, chord, group

import infratrace

BROKER = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/5")

app = Celery("infratrace_tests", broker=BROKER, backend=BROKER)
app.conf.update(
    task_default_queue=os.environ.get("INFRATRACE_TEST_QUEUE", "infratrace-tests"),
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
    result_expires=600,
    task_serializer="json",
    accept_content=["json"],
)
if os.environ.get("INFRATRACE_TEST_BEAT"):
    app.conf.beat_schedule = {
        "tick-twice-a-second": {
            "task": "tests.celery.worker_app.add",
            "schedule": 0.5,
            "args": (2, 3),
            "options": {"queue": os.environ["INFRATRACE_TEST_BEAT"]},
        }
    }


def instrument() -> None:
    infratrace_celery.instrument(app, no_propagate=["tests.celery.worker_app.isolated"])


instrument()


@infratrace.service("calc.add")
def _add(x: int, y: int) -> int:
    with infratrace.begin("method:calc.check", {"kind": "method", "target": "calc.check"}):
        return x + y


@app.task
def add(x: int, y: int) -> int:
    return _add(x, y)


@app.task(bind=True, max_retries=3)
def flaky(self: Any, fail_times: int) -> int:
    """Fails ``fail_times`` times (retrying each time), then returns the attempt."""
    if self.request.retries < fail_times:
        raise self.retry(exc=ConnectionError(f"attempt {self.request.retries + 1} failed"), countdown=0.05)
    return int(self.request.retries) + 1


@app.task
def fail(message: str) -> None:
    raise ValueError(message)


@app.task
def total(values: list[int]) -> int:
    return sum(values)


@app.task
def isolated() -> str:
    """Opted out of propagation (instrument(no_propagate=...))."""
    return "alone"


@app.task(infratrace_propagate=False)
def isolated_by_attribute() -> str:
    return "alone"


@app.task
def fan_out(queue: str) -> str:
    """Sends a chord from inside the worker: its parts continue this task's trace."""
    chord(group(add.s(i, i).set(queue=queue) for i in range(3)), total.s().set(queue=queue)).apply_async()
    return "sent"


# key -> a barrier shared by the copies of ``together`` running in one (threads pool) worker
_barriers: dict[str, threading.Barrier] = {}
_barriers_lock = threading.Lock()


@infratrace.service("calc.together")
def _together(barrier: threading.Barrier, value: int) -> int:
    barrier.wait()  # every copy has its service: span open at once
    with infratrace.begin("method:calc.check", {"kind": "method", "target": "calc.check"}):
        barrier.wait()  # ... and its method: span
        return value * 2


@app.task
def together(key: str, parties: int, value: int) -> int:
    """Runs only when ``parties`` copies (same ``key``) run at the same time in this
    process: each waits for the others (up to 15 s, else it fails) inside its own spans,
    so a pool that mixed up the threads' current spans would show in the trace."""
    with _barriers_lock:
        barrier = _barriers.setdefault(key, threading.Barrier(parties, timeout=15))
    return _together(barrier, value)


@app.task
def baggage_seen() -> dict[str, str]:
    """The baggage the task runs with (the producer's, carried in the message)."""
    return infratrace.baggage.get_all()
