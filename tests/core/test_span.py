"""begin/end, nesting through contextvars (threads and asyncio), statuses, trace(),
trace_attrs — read back from a real file connection."""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import infratrace
from infratrace import Span


def test_nested_spans_share_the_trace_and_link_parents(span_file):
    out = span_file()
    with infratrace.begin("http:GET /users/{id}", {"a": 1}, kind="server") as root:
        assert infratrace.current_span() is root
        with infratrace.begin("service:user.load") as child:
            assert infratrace.current_span() is child
            with infratrace.begin("method:user.query", {"sql": "select"}):
                pass
        assert infratrace.current_span() is root
    assert infratrace.current_span() is None
    spans = out.by_name()
    r, c, g = spans["http:GET /users/{id}"], spans["service:user.load"], spans["method:user.query"]
    assert r["trace_id"] == c["trace_id"] == g["trace_id"]
    assert len(r["trace_id"]) == 32 and len(r["span_id"]) == 16
    assert r["parent_span_id"] == ""
    assert c["parent_span_id"] == r["span_id"] and g["parent_span_id"] == c["span_id"]
    assert r["kind"] == "server" and c["kind"] == "internal"
    assert g["attributes"] == {"sql": "select"}
    assert r["start_time_unix_nano"] <= c["start_time_unix_nano"] <= g["start_time_unix_nano"]
    assert g["end_time_unix_nano"] <= c["end_time_unix_nano"] <= r["end_time_unix_nano"]
    assert r["duration_ms"] == pytest.approx((r["end_time_unix_nano"] - r["start_time_unix_nano"]) / 1e6)


def test_exception_marks_error_records_event_and_propagates(span_file):
    out = span_file()
    with pytest.raises(ZeroDivisionError):
        with infratrace.begin("method:divide"):
            1 / 0  # noqa: B018
    (span,) = out.spans()
    assert span["status"] == "error"
    assert span["status_message"] == "ZeroDivisionError: division by zero"
    assert span["status_code"] == 1
    (event,) = span["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "ZeroDivisionError"
    assert "1 / 0" in event["attributes"]["exception.stacktrace"]


def test_explicit_end_results(span_file):
    out = span_file()
    infratrace.begin("a").end()
    infratrace.begin("b").end("error")
    infratrace.begin("c").end(status="error", code=503, message="upstream down")
    infratrace.begin("d").end(ValueError("bad input"))
    span = infratrace.begin("e")
    span.set_status("error", "first")
    span.set_status("ok")
    span.end()
    twice = infratrace.begin("f")
    twice.end()
    twice.end("error")  # ignored
    spans = out.by_name()
    assert (spans["a"]["status"], spans["a"]["status_code"]) == ("ok", 0)
    assert spans["b"]["status"] == "error"
    assert (spans["c"]["status"], spans["c"]["status_code"], spans["c"]["status_message"]) == ("error", 503, "upstream down")
    assert spans["d"]["status_message"] == "ValueError: bad input"
    assert spans["e"]["status"] == "ok"
    assert spans["f"]["status"] == "ok"
    assert len(out.spans()) == 6


def test_one_shot_trace_events(span_file):
    out = span_file()
    with infratrace.begin("service:user.login") as parent:
        infratrace.trace("user.login.validated", {"status": "ok", "userId": 1001})
        infratrace.trace("user.login.failed", {"status": "error", "error": "invalid password"})
    spans = out.by_name()
    ok, failed = spans["user.login.validated"], spans["user.login.failed"]
    assert ok["status"] == "ok" and ok["attributes"] == {"userId": 1001}
    assert failed["status"] == "error" and failed["status_message"] == "invalid password"
    assert failed["attributes"] == {}
    assert ok["parent_span_id"] == failed["parent_span_id"] == parent.span_id
    assert ok["duration_ms"] == 0


def test_trace_attrs_kind_rules():
    assert infratrace.trace_attrs("user", "service", "login", {"module": "http"}) == {
        "module": "http",
        "service": "user",
        "kind": "service",
        "target": "login",
    }
    assert infratrace.trace_attrs("user", "server", "")["target"] == "unknown"
    odd = infratrace.trace_attrs("user", "batchjob", "nightly")
    assert (odd["kind"], odd["target"]) == ("custom", "batchjob")
    # fixed fields win over extra
    assert infratrace.trace_attrs("s", "http", "t", {"kind": "x"})["kind"] == "http"


@pytest.mark.parametrize(
    ("kind", "span_kind"),
    [
        ("http", "server"),
        ("web", "server"),
        ("queue", "producer"),
        ("service", "internal"),
        ("method", "internal"),
        ("server", "server"),
        ("client", "client"),
        ("consumer", "consumer"),
        ("bogus", "internal"),
    ],
)
def test_attribute_kind_gives_the_span_kind(span_file, kind, span_kind):
    out = span_file()
    infratrace.begin("x", infratrace.trace_attrs("svc", kind, "t")).end()
    (span,) = out.spans()
    assert span["kind"] == span_kind
    assert span["service_name"] == "svc"


def test_explicit_kind_wins_and_invalid_kind_is_internal(span_file):
    out = span_file()
    infratrace.begin("a", infratrace.trace_attrs("s", "http", "t"), kind="client").end()
    infratrace.begin("b", kind="nonsense").end()
    spans = out.by_name()
    assert spans["a"]["kind"] == "client" and spans["b"]["kind"] == "internal"


def test_async_with_and_tasks_have_their_own_current_span(span_file):
    out = span_file()

    async def worker(i: int) -> str:
        async with infratrace.begin(f"service:job{i}") as span:
            await asyncio.sleep(0)
            with infratrace.begin(f"method:step{i}"):
                await asyncio.sleep(0)
            return span.span_id

    async def main() -> list[str]:
        async with infratrace.begin("http:GET /batch") as root:
            ids = await asyncio.gather(*(worker(i) for i in range(20)))
            assert infratrace.current_span() is root
            return ids

    asyncio.run(main())
    spans = out.by_name()
    root = spans["http:GET /batch"]
    for i in range(20):
        job, step = spans[f"service:job{i}"], spans[f"method:step{i}"]
        assert job["parent_span_id"] == root["span_id"]
        assert step["parent_span_id"] == job["span_id"]
        assert step["trace_id"] == root["trace_id"]


def test_threads_are_independent_and_copy_context_propagates(span_file):
    out = span_file()
    barrier = threading.Barrier(8)

    def job(i: int) -> None:
        barrier.wait()
        with infratrace.begin(f"thread:{i}"):
            with infratrace.begin(f"thread:{i}:child"):
                pass

    threads = [threading.Thread(target=job, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with infratrace.begin("parent") as parent, ThreadPoolExecutor(4) as pool:
        ctx = contextvars.copy_context()
        pool.submit(ctx.run, lambda: infratrace.begin("pooled").end()).result()
    spans = out.by_name()
    for i in range(8):
        assert spans[f"thread:{i}"]["parent_span_id"] == ""
        assert spans[f"thread:{i}:child"]["parent_span_id"] == spans[f"thread:{i}"]["span_id"]
    assert len({spans[f"thread:{i}"]["trace_id"] for i in range(8)}) == 8
    assert spans["pooled"]["parent_span_id"] == parent.span_id


def test_span_ended_in_another_task_restores_that_context(span_file):
    out = span_file()

    async def main() -> None:
        span = infratrace.begin("outlives")

        async def closer() -> None:
            span.end()

        await asyncio.create_task(closer())
        assert infratrace.current_span() is span  # our context still holds it…
        span.end()  # …ending again is harmless

    asyncio.run(main())
    assert [s["name"] for s in out.spans()] == ["outlives"]


def test_start_span_does_not_become_current(span_file):
    out = span_file()
    with infratrace.begin("outer") as outer:
        detached = infratrace.start_span("detached")
        assert infratrace.current_span() is outer
        detached.end()
    assert out.by_name()["detached"]["parent_span_id"] == outer.span_id


def test_attributes_are_copied_and_any_value_is_serialisable(span_file):
    out = span_file()
    attrs = {"n": 1}
    span = infratrace.begin("x", attrs)
    attrs["n"] = 2
    span.set_attribute("obj", object())
    span.set_attribute("big", 1 << 100)
    span.set_attributes({"list": [1, "a"], "map": {"k": True}, "set": {1}})
    span.end()
    (record,) = out.spans()
    assert record["attributes"]["n"] == 1
    assert record["attributes"]["obj"].startswith("<object object")
    # Outputs hold 64-bit ints (OTLP, GreptimeDB): a bigger one is written as its text.
    assert record["attributes"]["big"] == str(1 << 100)
    assert record["attributes"]["list"] == [1, "a"] and json.loads(record["attributes"]["map"]) == {"k": True}
    assert record["attributes"]["set"] == [1]


def test_span_budget_limits_detail_spans(span_file):
    out = span_file()
    with infratrace.begin("http:GET /loop") as root, infratrace.span_budget(10) as budget:
        for i in range(25):
            with infratrace.begin(f"method:item{i}") as item:
                assert item.trace_id == root.trace_id
    names = [s["name"] for s in out.spans()]
    assert len(names) == 11
    assert budget.used == 10 and budget.dropped == 15
    assert infratrace.stats()["budget_dropped_count"] >= 15


def test_tracing_survives_a_hostile_attribute_and_name(span_file):
    out = span_file()

    class Evil:
        def __str__(self) -> str:
            raise RuntimeError("no")

        __repr__ = __str__

    span = infratrace.begin(123)  # type: ignore[arg-type]
    assert isinstance(span, Span)
    span.set_attribute("evil", Evil())
    span.end(ValueError(Evil()))  # type: ignore[arg-type]
    spans = out.spans()
    assert [s["name"] for s in spans] == ["123"]


def test_exception_event_is_stamped_within_the_span(span_file):
    out = span_file()
    try:
        with infratrace.begin("x"):
            raise KeyError("k")
    except KeyError:
        pass
    (span,) = out.spans()
    event_time = span["events"][0]["time_unix_nano"]
    assert span["start_time_unix_nano"] <= event_time <= span["end_time_unix_nano"]


def test_attach_and_detach_make_a_span_current_for_a_while(span_file):
    out = span_file()
    detached = infratrace.start_span("stream")
    token = infratrace.attach(detached)
    infratrace.trace("chunk")
    infratrace.detach(token)
    assert infratrace.current_span() is None
    detached.end()
    assert out.by_name()["chunk"]["parent_span_id"] == detached.span_id


def test_text_that_is_not_utf8_costs_no_span(span_file):
    """A lone surrogate can't be written as UTF-8: it is written as "?" and the other
    spans of the batch are written as usual."""
    out = span_file()
    infratrace.trace("before")
    infratrace.trace("bad \ud800 name", {"text": "x\udfffy", "key \ud801": 1})
    infratrace.trace("after")
    records = out.spans()
    assert [r["name"] for r in records] == ["before", "bad ? name", "after"]
    assert records[1]["attributes"] == {"text": "x?y", "key ?": 1}
