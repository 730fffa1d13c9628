"""End to end: tasks sent from this process, run by real worker processes (prefork with
2 processes, and solo) through the real Redis broker; spans read back from the files
of every process."""

from __future__ import annotations

import itertools
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from celery import chain, chord, group
from celery.exceptions import TaskRevokedError

import infratrace

from .conftest import ROOT, Session, Spans, Worker, wait_until, worker_config
from .worker_app import add, app, baggage_seen, fail, fan_out, flaky, isolated, isolated_by_attribute, together, total

pytestmark = pytest.mark.slow
POOLS = ("prefork", "solo", "threads")
ADD = "tests.celery.worker_app.add"


def by_id(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {span["span_id"]: span for span in spans}


def named(spans: list[dict[str, Any]], name: str, kind: str | None = None) -> list[dict[str, Any]]:
    return [s for s in spans if s["name"] == name and (kind is None or s["kind"] == kind)]


def parent_of(span: dict[str, Any], spans: list[dict[str, Any]]) -> dict[str, Any]:
    return by_id(spans)[span["parent_span_id"]]


@pytest.mark.parametrize("pool", POOLS)
def test_task_continues_the_callers_trace(celery_spans: Session, pool: str) -> None:
    queue = celery_spans.workers[pool].queue
    with infratrace.begin("web:checkout") as request_span:
        result = add.apply_async((2, 3), queue=queue)
    assert result.get(timeout=20) == 5

    spans = celery_spans.spans.wait_trace(request_span.trace_id, 5)
    producer = named(spans, f"queue:{ADD}", "producer")[0]
    consumer = named(spans, f"queue:{ADD}", "consumer")[0]
    service = named(spans, "service:calc.add")[0]
    method = named(spans, "method:calc.check")[0]
    assert producer["parent_span_id"] == request_span.span_id
    assert consumer["parent_span_id"] == producer["span_id"]
    assert service["parent_span_id"] == consumer["span_id"]
    assert method["parent_span_id"] == service["span_id"]
    assert consumer["resource"]["process.pid"] != os.getpid()
    attrs = consumer["attributes"]
    assert attrs["messaging.system"] == "celery"
    assert attrs["messaging.destination.name"] == queue
    assert attrs["messaging.message.id"] == result.id == producer["attributes"]["messaging.message.id"]
    assert attrs["celery.task_name"] == ADD
    assert attrs["attempt"] == 1
    assert attrs["celery.state"] == "SUCCESS"
    assert 0 <= attrs["celery.queue_latency_ms"] < 20_000
    assert (attrs["service"], attrs["kind"], attrs["target"]) == ("infratrace_tests", "queue", ADD)
    assert consumer["status"] == "ok"


@pytest.mark.parametrize("pool", POOLS)
def test_retries_are_attempts_in_one_trace(celery_spans: Session, pool: str) -> None:
    with infratrace.begin("web:flaky") as root:
        result = flaky.apply_async((2,), queue=celery_spans.workers[pool].queue)
    assert result.get(timeout=20) == 3

    spans = celery_spans.spans.wait_trace(root.trace_id, 7)
    consumers = sorted(named(spans, "queue:tests.celery.worker_app.flaky", "consumer"),
                       key=lambda s: s["attributes"]["attempt"])  # fmt: skip
    assert [c["attributes"]["attempt"] for c in consumers] == [1, 2, 3]
    assert [c["attributes"]["celery.state"] for c in consumers] == ["RETRY", "RETRY", "SUCCESS"]
    assert all(c["status"] == "ok" for c in consumers)
    assert "attempt 1 failed" in consumers[0]["attributes"]["celery.retry.reason"]
    # attempt n+1 <- the retry's publish <- attempt n
    for previous, current in itertools.pairwise(consumers):
        republish = parent_of(current, spans)
        assert republish["kind"] == "producer"
        assert republish["attributes"]["attempt"] == current["attributes"]["attempt"]
        assert republish["parent_span_id"] == previous["span_id"]
    assert parent_of(consumers[0], spans)["parent_span_id"] == root.span_id


@pytest.mark.parametrize("pool", POOLS)
def test_failing_task_is_an_error(celery_spans: Session, pool: str) -> None:
    with infratrace.begin("web:fail") as root:
        result = fail.apply_async(("card declined",), queue=celery_spans.workers[pool].queue)
    with pytest.raises(ValueError, match="card declined"):
        result.get(timeout=20)

    spans = celery_spans.spans.wait_trace(root.trace_id, 3)
    consumer = named(spans, "queue:tests.celery.worker_app.fail", "consumer")[0]
    assert consumer["status"] == "error"
    assert "ValueError: card declined" in consumer["status_message"]
    assert consumer["attributes"]["celery.state"] == "FAILURE"


def test_threads_pool_keeps_concurrent_tasks_apart(celery_spans: Session) -> None:
    """4 tasks sent at once from 4 threads here, run at once by the 4 threads of one
    worker (they wait for each other inside their spans, so a pool that shared or
    leaked the current span between threads would put a span under another task)."""
    worker = celery_spans.workers["threads"]
    key, parties = uuid.uuid4().hex, 4

    def send(value: int) -> tuple[Any, Any]:
        with infratrace.begin(f"web:together-{value}") as root:
            return root, together.apply_async((key, parties, value), queue=worker.queue)

    with ThreadPoolExecutor(parties) as pool:
        sent = list(pool.map(send, range(parties)))
    assert [result.get(timeout=30) for _, result in sent] == [v * 2 for v in range(parties)]

    consumer_pids = set()
    for root, result in sent:
        spans = celery_spans.spans.wait_trace(root.trace_id, 5)
        assert sorted(s["name"] for s in spans) == sorted(
            [root.name, "queue:tests.celery.worker_app.together", "queue:tests.celery.worker_app.together",
             "service:calc.together", "method:calc.check"]
        ), spans  # fmt: skip
        producer = named(spans, "queue:tests.celery.worker_app.together", "producer")[0]
        consumer = named(spans, "queue:tests.celery.worker_app.together", "consumer")[0]
        service = named(spans, "service:calc.together")[0]
        method = named(spans, "method:calc.check")[0]
        assert producer["parent_span_id"] == root.span_id
        assert consumer["parent_span_id"] == producer["span_id"]
        assert service["parent_span_id"] == consumer["span_id"]
        assert method["parent_span_id"] == service["span_id"]
        assert consumer["attributes"]["messaging.message.id"] == result.id
        assert consumer["attributes"]["messaging.destination.name"] == worker.queue
        assert consumer["attributes"]["attempt"] == 1 and consumer["status"] == "ok"
        consumer_pids.add(consumer["resource"]["process.pid"])
    assert len(consumer_pids) == 1 and os.getpid() not in consumer_pids  # one worker process, its threads


def test_chord_callback_is_in_the_same_trace(celery_spans: Session) -> None:
    queue = celery_spans.workers["prefork"].queue
    with infratrace.begin("web:report") as root:
        result = chord(group(add.s(i, i).set(queue=queue) for i in range(4)), total.s().set(queue=queue)).apply_async()
    assert result.get(timeout=20) == 12

    spans = celery_spans.spans.wait_trace(root.trace_id, 1 + 4 * 4 + 2)  # + service/method per add
    callback = named(spans, "queue:tests.celery.worker_app.total", "consumer")
    assert len(callback) == 1
    assert len(named(spans, f"queue:{ADD}", "consumer")) == 4
    # the callback was published by the last header task, inside its consumer span
    publisher = parent_of(parent_of(callback[0], spans), spans)
    assert publisher["name"] == f"queue:{ADD}" and publisher["kind"] == "consumer"


def test_chain_and_group_sent_from_a_task(celery_spans: Session) -> None:
    queue = celery_spans.workers["solo"].queue
    with infratrace.begin("web:canvas") as root:
        chained = chain(add.s(1, 1).set(queue=queue), add.s(5).set(queue=queue)).apply_async()
        sent = fan_out.apply_async((queue,), queue=queue)
    assert chained.get(timeout=20) == 7
    assert sent.get(timeout=20) == "sent"

    # chain: 2 x (producer, consumer, service, method); fan_out: producer, consumer, and its
    # chord: 3 x (producer, consumer, service, method) + the callback's producer, consumer
    spans = celery_spans.spans.wait_trace(root.trace_id, 1 + 8 + 2 + 12 + 2)
    assert len(named(spans, "queue:tests.celery.worker_app.total", "consumer")) == 1
    second = [c for c in named(spans, f"queue:{ADD}", "consumer") if c["attributes"]["messaging.message.id"] == chained.id]
    assert parent_of(parent_of(second[0], spans), spans)["name"] == f"queue:{ADD}"  # published by step 1


def test_unknown_task_is_ended_as_an_error(celery_spans: Session) -> None:
    with infratrace.begin("web:unknown") as root:
        app.send_task("tests.celery.no_such_task", queue=celery_spans.workers["solo"].queue)
    spans = celery_spans.spans.wait_trace(root.trace_id, 3)
    consumer = named(spans, "queue:tests.celery.no_such_task", "consumer")[0]
    assert consumer["status"] == "error" and "not registered" in consumer["status_message"]
    assert consumer["attributes"]["celery.state"] == "UNKNOWN"
    assert parent_of(consumer, spans)["kind"] == "producer"


@pytest.mark.parametrize("pool", POOLS)
def test_expired_task_is_ended_as_revoked(celery_spans: Session, pool: str) -> None:
    past = datetime.now(timezone.utc) - timedelta(minutes=1)
    with infratrace.begin("web:expired") as root:
        result = add.apply_async((1, 1), queue=celery_spans.workers[pool].queue, expires=past)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=20)
    spans = celery_spans.spans.wait_trace(root.trace_id, 3)
    consumer = named(spans, f"queue:{ADD}", "consumer")[0]
    assert consumer["status"] == "error"
    assert consumer["attributes"]["celery.state"] == "REVOKED"
    assert consumer["attributes"]["celery.revoked"] == "expired"
    assert not named(spans, "service:calc.add")


def test_malformed_traceparent_starts_a_new_trace(celery_spans: Session) -> None:
    """A message from some other producer with a broken header: the task still runs."""
    queue = celery_spans.workers["solo"].queue
    message = app.amqp.create_task_message("bad-tp-" + os.urandom(4).hex(), ADD, (20, 22), {})
    headers, properties, body, _ = message
    headers["traceparent"] = "00-not-a-trace-context-01"
    headers["headers"] = {"traceparent": "garbage", "tracestate": 7}
    with app.producer_or_acquire() as producer:
        producer.publish(body, routing_key=queue, headers=headers, serializer="json", **properties)
    assert app.AsyncResult(headers["id"]).get(timeout=20) == 42

    consumer = wait_until(lambda: celery_spans.spans.where(**{"messaging.message.id": headers["id"]}), what="span")[0]
    assert consumer["parent_span_id"] == "" and consumer["status"] == "ok"


def test_propagation_opt_out_per_task(celery_spans: Session) -> None:
    queue = celery_spans.workers["solo"].queue
    with infratrace.begin("web:isolated") as root:
        first = isolated.apply_async(queue=queue)
        second = isolated_by_attribute.apply_async(queue=queue)
    assert first.get(timeout=20) == second.get(timeout=20) == "alone"
    for result in (first, second):
        spans = wait_until(lambda r=result: len(s := celery_spans.spans.where(**{"messaging.message.id": r.id})) == 2
                           and s, what="2 spans")  # fmt: skip
        producer = next(s for s in spans if s["kind"] == "producer")
        consumer = next(s for s in spans if s["kind"] == "consumer")
        assert producer["trace_id"] == root.trace_id
        assert consumer["trace_id"] != root.trace_id and consumer["parent_span_id"] == ""


def test_beat_sends_trigger_spans(celery_spans: Session) -> None:
    import subprocess
    import sys

    worker = celery_spans.workers["solo"]
    env = dict(os.environ, INFRATRACE_TEST_BEAT=worker.queue, PYTHONPATH=str(ROOT),
               INFRATRACE_CONFIG=str(worker_config(celery_spans.directory)))  # fmt: skip
    log = (celery_spans.directory / "beat.log").open("wb")
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.celery.worker_app", "beat", "-l", "warning",
         "-s", str(celery_spans.directory / "beat-schedule"), "--max-interval", "1"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:

        def consumed() -> list[dict[str, Any]]:
            spans = celery_spans.spans.all()
            triggers = {s["span_id"]: s for s in named(spans, "trigger:tick-twice-a-second")}
            return [s for s in named(spans, f"queue:{ADD}", "consumer") if s["parent_span_id"] in triggers]

        consumer = wait_until(consumed, timeout=20, what="a task sent by beat")[0]
    finally:
        beat.terminate()
        assert beat.wait(20) == 0
    trigger = by_id(celery_spans.spans.all())[consumer["parent_span_id"]]
    assert trigger["kind"] == "producer" and trigger["parent_span_id"] == ""
    assert trigger["attributes"]["celery.beat.entry"] == "tick-twice-a-second"
    assert trigger["attributes"]["kind"] == "trigger"


def test_graceful_shutdown_loses_no_span(celery_session: Session, tmp_path: Any) -> None:
    """Flush interval 60 s: the spans can only reach the file through the shutdown
    flush of each pool process (which exits with os._exit) and of the main process."""
    import uuid

    config = worker_config(tmp_path, flush_interval="60s")
    worker = Worker("prefork", f"infratrace-shutdown-{uuid.uuid4().hex[:8]}", config, tmp_path / "w.log")
    try:
        results = [add.apply_async((i, 1), queue=worker.queue) for i in range(12)]
        assert [r.get(timeout=30) for r in results] == [i + 1 for i in range(12)]
        expired = add.apply_async((0, 0), queue=worker.queue, expires=datetime.now(timezone.utc) - timedelta(1))
        with pytest.raises(TaskRevokedError):
            expired.get(timeout=20)  # a span of the main process
    finally:
        assert worker.stop() == 0
    spans = Spans(tmp_path).all()
    consumers = {s["attributes"]["messaging.message.id"] for s in named(spans, f"queue:{ADD}", "consumer")}
    assert consumers == {r.id for r in results} | {expired.id}
    assert len(named(spans, "service:calc.add")) == 12
    assert len({s["resource"]["process.pid"] for s in spans}) >= 2  # pool processes and main


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_an_unsampled_request_keeps_only_the_failing_tasks_own_part(celery_spans: Session, pool: str) -> None:
    """This process keeps nothing (rate 0), so its messages carry the unsampled flag;
    the worker honours it, yet keeps the failing task's whole local trace by its own
    tail decision (error = true). It cannot recall the producer's spans, which this
    process dropped when its request ended: the consumer's parent is not written."""
    queue = celery_spans.workers[pool].queue
    infratrace.configure(
        f'[trace]\ndriver = "file"\njson = true\ntimeout = "50ms"\n[trace.sample]\nrate = 0\n'
        f'[trace.setting]\noutput = "{celery_spans.directory}/producer-{{pid}}.jsonl"\n'
    )
    with infratrace.begin("web:unsampled") as root:
        assert root.flags == 0
        failing = fail.apply_async(("declined",), queue=queue)
        fine = add.apply_async((1, 2), queue=queue)
    with pytest.raises(ValueError, match="declined"):
        failing.get(timeout=20)
    assert fine.get(timeout=20) == 3

    spans = celery_spans.spans.wait_trace(root.trace_id, 1)
    (consumer,) = spans
    assert consumer["name"] == "queue:tests.celery.worker_app.fail" and consumer["kind"] == "consumer"
    assert consumer["status"] == "error"
    assert consumer["parent_span_id"]  # the producer's span: dropped here, where it ended
    assert not [s for s in celery_spans.spans.all() if s["span_id"] == consumer["parent_span_id"]]
    # the task that succeeded followed the unsampled flag: nothing of it was written
    # (the workers write every 50 ms: give them several times that)
    time.sleep(0.5)
    assert not celery_spans.spans.where(**{"messaging.message.id": fine.id})


@pytest.mark.parametrize("pool", POOLS)
def test_baggage_travels_to_the_task_and_stays_with_it(celery_spans: Session, pool: str) -> None:
    queue = celery_spans.workers[pool].queue
    with infratrace.baggage.scope({"tenant": "acme co", "user.id": "42"}), infratrace.begin("web:baggage"):
        carried = baggage_seen.apply_async(queue=queue)
    assert carried.get(timeout=20) == {"tenant": "acme co", "user.id": "42"}
    # The next task in the same worker process runs without it.
    assert baggage_seen.apply_async(queue=queue).get(timeout=20) == {}
