"""Plain apps (no infratrace import) on real servers, started with ``infratrace-run``:
every request is one trace with the expected spans, whatever process served it."""

from __future__ import annotations

import signal
import sys
import uuid
from pathlib import Path

import pytest

from ..servers import free_port, redis_up, wait_until
from .conftest import APPS, BIN, Program, names, read_spans, request_traces

pytestmark = pytest.mark.slow


def check_requests(workdir: Path, paths: list[str], expected: list[str], health: list[str]) -> dict[str, list[dict]]:
    """One trace per request (``paths`` plus the one health request that succeeded),
    each with exactly the spans named, in the same file."""
    traces = request_traces(workdir, len(paths) + 1)
    assert len(traces) == len(paths) + 1, {trace_id: names(spans) for trace_id, spans in traces.items()}
    shapes = sorted(names(spans) for spans in traces.values())
    assert shapes == sorted([health] + [expected] * len(paths))
    for spans in traces.values():
        root = next(span for span in spans if not span["parent_span_id"])
        assert all(span["parent_span_id"] == root["span_id"] for span in spans if span is not root)
    return traces


def test_flask_under_gunicorn_two_workers_with_a_celery_prefork_worker(workdir: Path) -> None:
    if not redis_up():
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    queue = f"auto-{uuid.uuid4().hex[:8]}"
    env = {"AUTO_QUEUE": queue}
    port = free_port()
    worker = Program(
        [str(BIN / "celery"), "-A", "celery_app", "worker", "-P", "prefork", "-c", "2", "-Q", queue,
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning"],
        workdir, env,
    )  # fmt: skip
    web = Program([str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "flask_app:app"], workdir, env, port)
    try:
        web.wait_ready()
        for n in range(4):
            assert web.request(f"/hello/{n}") == (200, f"hello {n}".encode())
        for n in range(2):
            assert web.request(f"/task/{n}") == (200, b"sent")
        consumers = wait_until(
            lambda: (
                [span for span in read_spans(workdir) if span["name"] == "queue:auto.double" and span["kind"] == "consumer"]
                if len([s for s in read_spans(workdir) if s["kind"] == "consumer"]) >= 2
                else None
            ),
            30,
            "the worker's spans",
        )
        traces = request_traces(workdir, 7)
    finally:
        web.stop()
        worker.stop()
    assert len(traces) == 7
    hello = [spans for spans in traces.values() if names(spans) == ["http:GET /hello/<name>", "web:hello"]]
    assert len(hello) == 4
    tasks = [spans for spans in traces.values() if any(span["name"] == "web:task" for span in spans)]
    assert len(tasks) == 2 and len(consumers) == 2
    for spans in tasks:
        assert names(spans) == ["http:GET /task/<int:n>", "queue:auto.double", "queue:auto.double", "web:task"]
        producer = next(span for span in spans if span["kind"] == "producer")
        consumer = next(span for span in spans if span["kind"] == "consumer")
        assert consumer["parent_span_id"] == producer["span_id"]
        assert consumer["resource"]["process.pid"] != producer["resource"]["process.pid"]
    web_pids = {span["resource"]["process.pid"] for spans in traces.values() for span in spans if span["kind"] == "server"}
    assert web.process.pid not in web_pids  # served by the workers, not by gunicorn's arbiter
    assert "no configuration found" not in web.stderr + worker.stderr


def test_django_under_gunicorn_preload(workdir: Path) -> None:
    port = free_port()
    web = Program(
        [str(BIN / "gunicorn"), "-w", "2", "--preload", "-b", f"127.0.0.1:{port}", "autoproj.wsgi:application"],
        workdir,
        port=port,
    )
    try:
        web.wait_ready()
        for n in range(4):
            assert web.request(f"/hello/{n}") == (200, f"hello {n}".encode())
        check_requests(
            workdir,
            [f"/hello/{n}" for n in range(4)],
            ["http:GET hello/<str:name>", "web:autoproj.views.hello"],
            ["http:GET health", "web:autoproj.views.health"],
        )
    finally:
        web.stop()


def test_fastapi_under_uvicorn_two_spawned_workers(workdir: Path) -> None:
    port = free_port()
    web = Program(
        [str(BIN / "uvicorn"), "--workers", "2", "--host", "127.0.0.1", "--port", str(port), "fastapi_app:app"],
        workdir,
        port=port,
    )
    try:
        web.wait_ready()
        for n in range(4):
            assert web.request(f"/items/{n}") == (200, f'{{"item_id":{n}}}'.encode())
        traces = check_requests(
            workdir,
            [f"/items/{n}" for n in range(4)],
            ["http:GET /items/{item_id}", "web:fastapi_app.read_item"],
            ["http:GET /health", "web:fastapi_app.health"],
        )
    finally:
        web.stop()
    server_spans = [span for spans in traces.values() for span in spans if span["kind"] == "server"]
    assert all(span["attributes"]["http.route"] for span in server_spans)
    # Everything else written is the workers' lifespan: no request traced twice, no stray trace.
    others = {span["name"] for span in read_spans(workdir) if span["trace_id"] not in traces}
    assert others <= {"event:lifespan.startup", "event:lifespan.shutdown"}, others


def test_django_runserver_with_the_autoreloader(workdir: Path) -> None:
    port = free_port()
    web = Program([sys.executable, str(APPS / "manage.py"), "runserver", f"127.0.0.1:{port}"], workdir, port=port)
    try:
        web.wait_ready()
        for n in range(3):
            assert web.request(f"/hello/{n}") == (200, f"hello {n}".encode())
        traces = check_requests(
            workdir,
            [f"/hello/{n}" for n in range(3)],
            ["http:GET hello/<str:name>", "web:autoproj.views.hello"],
            ["http:GET health", "web:autoproj.views.health"],
        )
    finally:
        web.stop(signal.SIGINT)
    spans = read_spans(workdir)
    # One process served them all: the autoreloader's child, not its parent.
    assert len({span["resource"]["process.pid"] for spans in traces.values() for span in spans}) == 1
    assert web.process.pid not in {span["resource"]["process.pid"] for span in spans}
    assert {span["trace_id"] for span in spans} == set(traces), "a trace no request made (the autoreloader's signals?)"
