"""In-process behaviour: eager runs, header handling, publish failures, options,
uninstrument, and that tracing never breaks a task."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import infratrace_celery
import pytest
from celery import Celery
from celery.app.task import Context
from infratrace_celery._headers import context_from_headers, context_from_request, write_context
from kombu.exceptions import OperationalError

import infratrace

from .worker_app import add, fail, flaky, instrument, isolated

FLAKY = "queue:tests.celery.worker_app.flaky"


@pytest.fixture(autouse=True)
def instrumented() -> Iterator[None]:
    instrument()
    yield
    instrument()


def test_eager_run_is_a_child_of_the_caller(span_file: Callable[..., Any]) -> None:
    spans = span_file()
    with infratrace.begin("web:eager") as root:
        assert add.apply((4, 5)).get() == 9
    found = spans.by_name()
    consumer = found["queue:tests.celery.worker_app.add"]
    assert consumer["parent_span_id"] == root.span_id and consumer["kind"] == "consumer"
    assert consumer["attributes"]["celery.eager"] is True and consumer["attributes"]["attempt"] == 1
    assert found["service:calc.add"]["parent_span_id"] == consumer["span_id"]
    assert "queue:tests.celery.worker_app.add" not in {s["name"] for s in spans.spans() if s["kind"] == "producer"}


def test_task_always_eager_app(span_file: Callable[..., Any]) -> None:
    spans = span_file()
    eager = Celery("eager-app", broker="memory://", set_as_current=False)
    eager.conf.task_always_eager = True

    @eager.task(name="eager.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    with infratrace.begin("web:always") as root:
        assert mul.delay(6, 7).get() == 42
    consumer = spans.by_name()["queue:eager.mul"]
    assert consumer["parent_span_id"] == root.span_id


def test_eager_retries_and_failure(span_file: Callable[..., Any]) -> None:
    spans = span_file()
    with infratrace.begin("web:eager-retry"):
        assert flaky.apply((2,)).get() == 3
        failed = fail.apply(("nope",))
    assert failed.failed()
    attempts = sorted(s["attributes"]["attempt"] for s in spans.spans() if s["name"] == FLAKY)
    assert attempts == [1, 2, 3]
    error = spans.by_name()["queue:tests.celery.worker_app.fail"]
    assert error["status"] == "error" and "nope" in error["status_message"]


def test_headers_are_written_to_both_places_and_overwrite_stale_ones() -> None:
    stale = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    headers: dict[str, Any] = {"traceparent": stale, "tracestate": "old=1", "headers": {"traceparent": stale, "x": 1}}
    with infratrace.begin("web:x") as span:
        write_context(headers, span, 123)
    expected = infratrace.format_traceparent(span)
    assert headers["traceparent"] == headers["headers"]["traceparent"] == expected
    assert "tracestate" not in headers and headers["headers"]["x"] == 1
    context, published = context_from_headers({"headers": {"traceparent": expected, "infratrace_published_ns": 5}})
    assert context is not None and context.span_id == span.span_id and published == 5


@pytest.mark.parametrize(
    "request_dict",
    [{"traceparent": "zz"}, {"traceparent": 12}, {"headers": {"traceparent": b"\xff"}}, {"headers": "x"}, {}],
)
def test_malformed_or_missing_context_is_ignored(request_dict: dict[str, Any]) -> None:
    assert context_from_request(Context(request_dict)) == (None, None)


def test_publish_failure_ends_the_producer_span(span_file: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)  # it would override the dead broker
    spans = span_file()
    down = Celery("down", broker="redis://127.0.0.1:1/0", set_as_current=False)
    down.conf.update(task_publish_retry=False, broker_connection_retry=False, broker_connection_timeout=1)

    @down.task(name="down.ping")
    def ping() -> None: ...

    infratrace_celery.instrument(down)
    with infratrace.begin("web:down"), pytest.raises(OperationalError):
        ping.apply_async()
    producer = spans.by_name()["queue:down.ping"]
    assert producer["kind"] == "producer" and producer["status"] == "error"
    assert producer["attributes"]["celery.publish_failed"] is True


class BrokenHook:
    def __getattr__(self, name: str) -> Any:
        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("tracer is broken")

        return broken


def test_a_broken_tracer_never_breaks_a_task() -> None:
    infratrace.set_hook(BrokenHook())  # type: ignore[arg-type]
    assert flaky.apply((1,)).get() == 2
    assert isolated.apply().get() == "alone"
    assert fail.apply(("x",)).failed()


def test_uninstrument_is_idempotent(span_file: Callable[..., Any]) -> None:
    spans = span_file()
    infratrace_celery.uninstrument()
    infratrace_celery.uninstrument()
    assert not infratrace_celery.is_instrumented()
    add.apply((1, 1))
    assert spans.spans() == [] or all(not s["name"].startswith("queue:") for s in spans.spans())
    instrument()
    add.apply((1, 1))
    assert any(s["name"].startswith("queue:") for s in spans.spans())


def test_bad_options_name_the_option() -> None:
    with pytest.raises(infratrace.ConfigError, match="span_budget"):
        infratrace_celery.instrument(span_budget=-1)
    with pytest.raises(infratrace.ConfigError, match="propogate"):
        infratrace_celery.instrument(propogate=False)


def test_excluded_tasks_get_no_spans(span_file: Callable[..., Any]) -> None:
    spans = span_file()
    infratrace_celery.instrument(excluded_tasks=["tests.celery.worker_app.a*"])
    add.apply((1, 1))
    names = {s["name"] for s in spans.spans()}
    assert "queue:tests.celery.worker_app.add" not in names and "service:calc.add" in names


def _sender_defaults(app: Celery) -> tuple[Any, Any]:
    import inspect

    sender = app.amqp.send_task_message
    sender = getattr(sender, "__wrapped__", sender)
    captured = inspect.getclosurevars(sender).nonlocals
    return captured["default_compressor"], captured["default_policy"]["max_retries"]


def test_configuration_set_after_instrument_is_honoured() -> None:
    def configured_later(traced: bool) -> tuple[Any, Any]:
        app = Celery("later", broker="memory://", set_as_current=False)
        if traced:
            infratrace_celery.instrument(app)
        assert app.conf.task_serializer == "json"  # the app is configured now...
        app.conf.task_compression = "gzip"  # ...and changed afterwards, before any publish
        app.conf.task_publish_retry_policy = {"max_retries": 7}
        return _sender_defaults(app)

    try:
        assert configured_later(traced=False) == ("gzip", 7)
        assert configured_later(traced=True) == ("gzip", 7)
    finally:
        instrument()  # the worker app's instrumentation, as the other tests expect


def test_an_instrumented_app_can_be_garbage_collected() -> None:
    import gc
    import weakref

    app = Celery("leak", broker="memory://", set_as_current=False)
    try:
        infratrace_celery.instrument(app)
        app.amqp.send_task_message  # noqa: B018 - built and guarded
        ref = weakref.ref(app)
        del app
        instrument()  # another app instrumented: nothing of ours refers to the first one
        gc.collect()
        assert ref() is None
    finally:
        instrument()
