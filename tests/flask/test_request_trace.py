"""The C request trace (infratrace._speedups.RequestTraceBase, behind
infratrace_flask's RequestTrace) against its pure-Python reference, PyRequestTrace:
the same status, span name, attributes and end for every path through a request.
The whole Flask suite exercises the C one; this compares them call by call."""

from __future__ import annotations

from typing import Any

import pytest
from infratrace_flask import _middleware
from infratrace_flask._middleware import PyRequestTrace, RequestTrace

import infratrace
from infratrace import SpanBudget, _span
from infratrace.web import WebOptions

needs_c = pytest.mark.skipif(_span._speedups is None, reason="the C speedups are not in use")


def run(cls: Any, script: list[tuple[Any, ...]], budget_drops: int | None) -> tuple[Any, ...]:
    calls: list[tuple[Any, ...]] = []

    def server_start_response(*args: Any) -> str:
        calls.append(args)
        return "write"

    span = infratrace.start_span("http:GET", {"url.path": "/"}, kind="server")
    budget = None
    if budget_drops is not None:
        budget = SpanBudget(1).activate()
        for _ in range(budget_drops + 1):
            budget.take()
    trace = cls(span, budget, WebOptions(), "GET", server_start_response)
    results = []
    for step in script:
        results.append(getattr(trace, step[0])(*step[1:]))
    if budget is not None:
        budget.deactivate()
    return (
        results,
        calls,
        trace.status_code,
        trace.route,
        trace.finished,
        span.name,
        dict(span.attributes),
        span._status,
        span.ended,
    )


SCRIPTS = [
    [("status_only", "200 OK", [("a", "b")]), ("set_route", "/users/<int:id>"), ("finish",)],
    [("status_only", "404 NOT FOUND", [], None), ("finish",), ("finish", ValueError("late"))],
    [("status_only", "503 SERVICE UNAVAILABLE", []), ("finish",)],
    [("status_only", "500 INTERNAL SERVER ERROR", [], (ValueError, ValueError("x"), None)), ("finish",)],
    [("set_route", "/a"), ("set_route", "/b"), ("finish", KeyError("k"))],
    [("finish", RuntimeError("boom"))],
    [("status_only", "abc", []), ("finish",)],
    [("finish",)],
]


@needs_c
@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("budget_drops", [None, 0, 2])
def test_the_c_request_trace_matches_the_python_one(script, budget_drops):
    assert issubclass(RequestTrace, _span._speedups.RequestTraceBase)
    c = run(RequestTrace, script, budget_drops)
    py = run(PyRequestTrace, script, budget_drops)
    assert c == py
    assert c[-1] is True  # the span ended


@needs_c
def test_a_route_entry_is_made_once_per_method_and_rule():
    made = []
    original = RequestTrace._route_entry

    def counting(method: str, route: str) -> Any:
        made.append((method, route))
        return original(method, route)

    _middleware._routes.clear()
    RequestTrace._route_entry = staticmethod(counting)
    try:
        for _ in range(3):
            run(RequestTrace, [("set_route", "/once/<id>"), ("finish",)], None)
    finally:
        RequestTrace._route_entry = staticmethod(original)
    assert made == [("GET", "/once/<id>")]


@needs_c
def test_finish_never_raises_and_start_response_errors_reach_the_app():
    class Broken:
        name = "x"
        attributes = None

        def set_attribute(self, *args: Any) -> None:
            raise RuntimeError("tracer trouble")

        def end(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("tracer trouble")

    budget = SpanBudget(0).activate()
    budget.take()
    trace = RequestTrace(Broken(), budget, WebOptions(), "GET", None)
    trace.finish(ValueError("app"))  # nothing raised
    budget.deactivate()
    with pytest.raises(TypeError):  # the server's start_response (here None) is not callable
        RequestTrace(Broken(), None, WebOptions(), "GET", None).status_only("200 OK", [])
