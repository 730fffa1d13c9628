"""The C speedups (csrc/speedups): built, equivalent to the pure-Python code, and safe
at their edges. The whole core and driver suites also run once more with
``INFRATRACE_PURE_PYTHON=1`` (test_pure_python_suite), so both implementations pass
the same tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import infratrace
from infratrace import _span

ROOT = Path(__file__).resolve().parents[2]
PURE = os.environ.get("INFRATRACE_PURE_PYTHON", "0") not in ("", "0")
needs_c = pytest.mark.skipif(_span._speedups is None, reason="the C speedups are not in use")


def test_the_extension_is_built_and_used():
    if PURE:
        assert _span._speedups is None and _span.Span is _span.PySpan
        return
    assert _span._speedups is not None, (
        "infratrace._speedups did not build (is gcc with the Python headers installed?); "
        "infratrace works without it, at several times the cost per span"
    )
    assert issubclass(_span.Span, _span._speedups.SpanBase)
    assert infratrace.begin is _span._speedups.begin


@pytest.mark.skipif(PURE, reason="this is the pure-Python run itself")
@pytest.mark.skipif(_span._speedups is None, reason="without the extension the suite already runs pure Python")
def test_pure_python_suite():
    env = {**os.environ, "INFRATRACE_PURE_PYTHON": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests/core", "tests/drivers"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


@needs_c
def test_span_times_use_the_perf_counter_clock():
    before = time.perf_counter_ns()
    span = infratrace.start_span("x")
    span.end()
    after = time.perf_counter_ns()
    assert before <= span._t0 <= span._t1 <= after


@needs_c
def test_ids_round_trip_through_python_ints():
    span = infratrace.start_span("x")
    span._tid = (1 << 128) - 1
    span._sid = (1 << 64) - 1
    span._pid = 0x1234
    assert span._tid == (1 << 128) - 1 and span.trace_id == "f" * 32
    assert span._sid == (1 << 64) - 1 and span.span_id == "f" * 16
    assert span.parent_span_id == "0000000000001234"
    span._pid = 0
    assert span.parent_span_id == ""
    for bad in (-1, 1 << 128, "1"):
        with pytest.raises((ValueError, TypeError)):
            span._tid = bad
    with pytest.raises(ValueError):
        span._sid = 1 << 64
    span.end()


@needs_c
def test_children_of_remote_and_non_recording_parents_keep_the_trace():
    remote = infratrace.extract({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "k=v"})
    assert remote is not None
    with infratrace.begin("server", parent=remote) as server:
        assert server.trace_id == "0af7651916cd43dd8448eb211c80319c"
        assert server.parent_span_id == "b7ad6b7169203331"
        assert server.tracestate == "k=v"
        with infratrace.begin("child") as child:
            assert child.tracestate == "k=v" and child._pid == server._sid
    silent = _span.NonRecordingSpan("budgeted", server, make_current=False)
    span = infratrace.start_span("under a non-recording span", parent=silent)
    assert span._tid == server._tid and span._pid == silent._sid
    span.end()


@needs_c
def test_a_parent_that_is_not_a_span_gives_a_non_recording_span():
    span = infratrace.begin("x", parent=object())  # type: ignore[arg-type]
    assert isinstance(span, _span.NonRecordingSpan)
    assert infratrace.current_span() is span
    span.end()
    assert infratrace.current_span() is None


@needs_c
def test_odd_arguments_take_the_python_path_with_the_same_result():
    class Name:
        def __str__(self) -> str:
            return "custom"

    span = infratrace.start_span(Name(), [("a", 1)], kind="web")  # type: ignore[arg-type]
    assert isinstance(span, _span.Span)
    assert (span.name, span.attributes, span.kind) == ("custom", {"a": 1}, "server")
    span.end()
    with pytest.raises(TypeError):
        infratrace.begin()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        infratrace.begin("x", {}, unknown=1)  # type: ignore[call-arg]


@needs_c
def test_end_arguments_match_the_python_span():
    for kwargs, expected in (
        ({}, ("ok", 0, "")),
        ({"code": 404}, ("ok", 404, "")),
        ({"status": "error", "message": "boom"}, ("error", 1, "boom")),
        ({"result": "error"}, ("error", 1, "")),
    ):
        c_span = infratrace.start_span("c")
        py_span = _span.PySpan("py", {}, "internal", None)
        c_span.end(**kwargs)
        py_span.end(**kwargs)
        assert (c_span.status, c_span.status_code, c_span.status_message) == expected
        assert (py_span.status, py_span.status_code, py_span.status_message) == expected
    span = infratrace.start_span("exc")
    span.end(ValueError("bad"))
    assert span.status == "error" and span.status_message == "ValueError: bad"
    assert span.events[0][0] == "exception"
    with pytest.raises(TypeError):
        span.end(1, 2)  # type: ignore[call-arg]


@needs_c
def test_ending_in_another_task_restores_only_that_tasks_context():
    async def main() -> None:
        span = infratrace.begin("outer")

        async def other() -> None:
            span.end()  # a token from the other context: the Python fallback handles it

        await asyncio.create_task(other())
        assert span.ended
        assert infratrace.current_span() is span  # this task's context is its own
        _span.detach(span._token) if span._token else None
        _span._current.set(None)

    asyncio.run(main())


@needs_c
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_draws_other_ids_than_its_parent():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.write(write, infratrace.start_span("child").trace_id.encode())
        finally:
            os._exit(0)
    os.close(write)
    mine = infratrace.start_span("parent").trace_id
    theirs = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    os.close(read)
    assert len(theirs) == 32 and theirs != mine


@needs_c
def test_spans_are_garbage_collected_in_cycles():
    import gc
    import weakref

    class Holder:
        pass

    holder = Holder()
    span = infratrace.start_span("cycle", {"self": holder})
    holder.span = span  # type: ignore[attr-defined]
    ref = weakref.ref(holder)
    del holder, span
    gc.collect()
    assert ref() is None


@needs_c
def test_an_ended_span_that_cannot_be_in_a_cycle_leaves_the_collectors_lists():
    import gc

    plain = infratrace.start_span("plain", {"user.id": 1, "route": "/users/{id}", "ok": True})
    assert gc.is_tracked(plain)
    plain.end(code=200)
    assert not gc.is_tracked(plain)  # queued spans are not traversed by every collection

    holder: list[object] = []
    nested = infratrace.start_span("nested", {"items": holder})  # a container: could lead back
    nested.end()
    assert gc.is_tracked(nested)

    with_event = infratrace.start_span("event")
    with_event.add_event("retry", {"attempt": 2})
    with_event.end()
    assert gc.is_tracked(with_event)


@needs_c
def test_traceparent_parsing_in_c_matches_the_python_rules():
    import random

    from infratrace._propagation import parse_traceparent, parse_traceparent_py

    rng = random.Random(7)
    alphabet = "0123456789abcdefABCDEF-g \t\n\x0b\x1c\x1fé\x00z"
    valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    seeds = [
        valid,
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future-fields",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
        "02-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff-a\nb",
        " \t" + valid + "\x1c\n",
        valid + "\n",
        "",
        "-",
        valid[:-1],
        "é" + valid,
    ]
    cases = list(seeds)
    for _ in range(20_000):
        text = list(rng.choice(seeds) or valid)
        for _ in range(rng.randint(0, 3)):
            action = rng.random()
            position = rng.randint(0, len(text))
            if action < 0.5 and text:
                text[min(position, len(text) - 1)] = rng.choice(alphabet)
            elif action < 0.75:
                text.insert(position, rng.choice(alphabet))
            elif text:
                del text[min(position, len(text) - 1)]
        cases.append("".join(text))
    accepted = 0
    for value in cases:
        for state in ("", "k=v"):
            want = parse_traceparent_py(value, state)
            assert parse_traceparent(value, state) == want, repr(value)
            accepted += want is not None
    assert accepted > 1000  # the mutations keep enough valid headers to compare ids


@pytest.mark.parametrize("make", ["c", "python"])
def test_both_span_budgets_count_and_deactivate_alike(make):
    import contextvars

    from infratrace import _budget

    if make == "c" and _span._speedups is None:
        pytest.skip("the C speedups are not in use")
    cls = _budget.SpanBudget if make == "c" else _budget.PySpanBudget
    before = _budget.dropped_total()
    budget = cls(2).activate()
    assert _budget.active_budget() is budget
    assert [budget.take() for _ in range(4)] == [True, True, False, False]
    assert (budget.used, budget.dropped, _budget.dropped_total() - before) == (2, 2, 2)
    assert repr(budget) == "SpanBudget(limit=2, used=2, dropped=2)"
    budget.deactivate()
    budget.deactivate()  # twice: harmless
    assert _budget.active_budget() is None

    # Deactivated from a copy of the context: that context loses it, ours keeps it.
    other = cls(5).activate()
    contextvars.copy_context().run(lambda: (other.deactivate(), _budget.active_budget()))
    assert _budget.active_budget() is other
    _budget._active.set(None)


def test_long_chains_of_unended_spans_and_active_budgets_free_without_a_crash():
    # Each span and each activated budget holds the context-variable token that holds
    # the one before it: 300 000 never ended or deactivated make a chain that freed
    # recursively would overflow the C stack (it did, for C budgets: a segfault when
    # the chain was dropped).
    code = (
        "import contextvars, infratrace\n"
        "from infratrace import SpanBudget\n"
        "def chains():\n"
        "    for _ in range(300_000):\n"
        "        SpanBudget(10).activate()\n"
        "        infratrace.begin('x')\n"
        "contextvars.copy_context().run(chains)\n"
        "print('freed')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout.strip()) == (0, "freed"), result.stderr[-2000:]


@needs_c
@pytest.mark.parametrize("status", [None, 0, 200, 302, 404, 499, 500, 503, 2**70, "200"])
@pytest.mark.parametrize("exc", [None, ValueError("boom")])
@pytest.mark.parametrize("budget_drops", [None, 0, 3])
@pytest.mark.parametrize("already_ended", [False, True])
def test_finish_http_span_in_c_matches_the_python_rules(status, exc, budget_drops, already_ended):
    from infratrace import SpanBudget, web
    from infratrace._budget import active_budget

    assert web.finish_http_span is _span._speedups.finish_http_span
    outcomes = []
    for finish in (web.finish_http_span, web.finish_http_span_py):
        span = infratrace.start_span("http:GET", {"url.path": "/"}, kind="server")
        if already_ended:
            span.end()
        budget = None
        if budget_drops is not None:
            budget = SpanBudget(1).activate()
            for _ in range(budget_drops + 1):
                budget.take()
        finish(span, status, exc, budget)
        outcomes.append((dict(span.attributes), span._status, span.ended, active_budget()))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][2] is True and outcomes[0][3] is None


def test_span_contexts_pickle_and_copy_with_their_fields():
    import copy
    import pickle

    from infratrace import SpanContext

    for context in (
        infratrace.parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "k=v"),
        SpanContext(2**128 - 1, 2**64 - 1, 1, "", False),
    ):
        for clone in (pickle.loads(pickle.dumps(context)), copy.copy(context), copy.deepcopy(context)):
            assert type(clone) is type(context)
            assert (clone, clone.flags, clone.tracestate, clone.is_remote, clone._ctx) == (
                context,
                context.flags,
                context.tracestate,
                context.is_remote,
                context._ctx,
            )


def test_set_attribute_and_set_attributes_behave_as_the_python_methods():
    spans = [infratrace.start_span("x", {"a": 1}), _span.PySpan("x", {"a": 1}, "internal", None)]
    for span in spans:
        span.set_attribute("b", 2)
        span.set_attributes({"c": 3})
        span.set_attributes([("d", 4)])  # what dict.update accepts
        with pytest.raises(TypeError):
            span.set_attributes(5)
    assert spans[0].attributes == spans[1].attributes == {"a": 1, "b": 2, "c": 3, "d": 4}
    spans[0].end()
