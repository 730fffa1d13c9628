"""``event:<signal>`` spans for receivers, default exclusions, allow/deny lists."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import django
import pytest
from django.core.signals import request_finished, request_started
from django.dispatch import Signal
from django.test import AsyncClient, Client, override_settings
from infratrace_django import name_signal

import infratrace
from tests.conftest import SpanFile

from .project import views

ORDER = "event:order_placed"
ASYNC_RECEIVERS = django.VERSION >= (5, 0)
PLACED = ["async:7", "sync:7"] if ASYNC_RECEIVERS else ["sync:7"]


@pytest.fixture
def spans_of(span_file: Callable[..., SpanFile]) -> Iterator[SpanFile]:
    views.received.clear()
    yield span_file()


def test_one_span_per_receiver_with_receiver_path(spans_of: SpanFile) -> None:
    assert Client().get("/order/").content == b"placed"
    assert sorted(views.received) == PLACED
    spans = spans_of.spans()
    events = [s for s in spans if s["name"] == ORDER]
    assert len(events) == len(PLACED)
    web = next(s for s in spans if s["name"] == "web:tests.django.project.views.place_order")
    by_receiver = {s["attributes"]["django.signal.receiver"]: s for s in events}
    assert set(by_receiver) == {
        "tests.django.project.views.remember_order",
        *(["tests.django.project.views.remember_order_async"] if ASYNC_RECEIVERS else []),
    }
    for span in events:
        assert span["kind"] == "internal" and span["status"] == "ok"
        assert span["attributes"]["kind"] == "event" and span["attributes"]["target"] == "order_placed"
        assert span["attributes"]["django.signal.sender"] == "tests.django.project.views.ItemView"
        assert span["trace_id"] == web["trace_id"]
    sync_span = by_receiver["tests.django.project.views.remember_order"]
    assert sync_span["parent_span_id"] == web["span_id"]
    inner = next(s for s in spans if s["name"] == "method:inside.receiver")
    assert inner["parent_span_id"] == sync_span["span_id"]


@pytest.mark.skipif(not ASYNC_RECEIVERS, reason="Signal.asend and async receivers need Django 5")
def test_async_receivers_through_asend(spans_of: SpanFile) -> None:
    response = asyncio.run(AsyncClient().get("/async-order/"))
    assert response.status_code == 200 and sorted(views.received) == ["async:8", "sync:8"]
    spans = spans_of.spans()
    web = next(s for s in spans if s["name"] == "web:tests.django.project.views.async_place_order")
    events = [s for s in spans if s["name"] == ORDER]
    assert len(events) == 2 and all(s["parent_span_id"] == web["span_id"] for s in events)


def test_request_signals_excluded_by_default(spans_of: SpanFile) -> None:
    seen: list[str] = []

    def on_started(sender: Any, **kwargs: Any) -> None:
        seen.append("started")

    request_started.connect(on_started)
    try:
        Client().get("/hello/")
    finally:
        request_started.disconnect(on_started)
    assert seen == ["started"]
    names = {s["name"] for s in spans_of.spans()}
    assert "event:request_started" not in names and "event:request_finished" not in names


def test_excluded_signal_skips_the_wrapper_until_the_policy_changes(spans_of: SpanFile) -> None:
    from infratrace_django.signals import ORIGINAL_METHODS

    Client().get("/hello/")
    # request_started is denied by default: after its first send it calls Django's
    # own dispatch methods directly (bound on the instance), no traced copy per request.
    bound = vars(request_started).get("send")
    assert bound is not None and bound.__func__ is ORIGINAL_METHODS["send"]
    with override_settings(INFRATRACE_DJANGO={"signal_allow": ["request_*"]}):
        assert "send" not in vars(request_started)  # re-decided
        Client().get("/hello/")
        assert "send" not in vars(request_started)  # traced now
        assert "event:request_started" in {s["name"] for s in spans_of.spans()}
    quiet = Signal()

    def on_quiet(sender: Any, **kwargs: Any) -> None:
        pass

    quiet.connect(on_quiet)
    name_signal(quiet, "request_quiet")  # not denied (only the four defaults are)
    quiet.send(sender=None)
    assert "send" not in vars(quiet)
    name_signal(quiet, "pre_init")  # now denied
    quiet.send(sender=None)
    assert "send" in vars(quiet) and "send_robust" in vars(quiet)
    name_signal(quiet, "quiet_again")
    assert "send" not in vars(quiet)


@override_settings(INFRATRACE_DJANGO={"signal_allow": ["request_*"]})
def test_allow_list_replaces_default_exclusions(spans_of: SpanFile) -> None:
    def on_finished(sender: Any, **kwargs: Any) -> None:
        pass

    request_finished.connect(on_finished)
    try:
        Client().get("/order/")
    finally:
        request_finished.disconnect(on_finished)
    names = [s["name"] for s in spans_of.spans()]
    assert "event:request_finished" in names
    assert ORDER not in names  # not on the allow list


@override_settings(INFRATRACE_DJANGO={"signal_deny": ["order_*"]})
def test_deny_list(spans_of: SpanFile) -> None:
    Client().get("/order/")
    assert sorted(views.received) == PLACED
    assert ORDER not in {s["name"] for s in spans_of.spans()}


@override_settings(INFRATRACE_DJANGO={"signals": False})
def test_signal_tracing_off(spans_of: SpanFile) -> None:
    Client().get("/order/")
    assert ORDER not in {s["name"] for s in spans_of.spans()}


def test_receiver_exception_is_recorded_and_propagates(spans_of: SpanFile) -> None:
    failing = Signal()
    name_signal(failing, "payment_failed")

    def explode(sender: Any, **kwargs: Any) -> None:
        raise LookupError("no such card")

    failing.connect(explode)
    with pytest.raises(LookupError):
        failing.send(sender=None)
    robust = failing.send_robust(sender=None)
    assert robust[0][0] == explode and isinstance(robust[0][1], LookupError)
    events = [s for s in spans_of.spans() if s["name"] == "event:payment_failed"]
    assert len(events) == 2
    assert all(s["status"] == "error" and s["status_message"] == "LookupError: no such card" for s in events)


def test_send_results_keep_receiver_identity(spans_of: SpanFile) -> None:
    results = dict(views.order_placed.send(sender=None, order=1))
    assert results[views.remember_order] is None
    assert (views.remember_order_async in results) is ASYNC_RECEIVERS


def test_weak_receivers_and_disconnect_still_work(spans_of: SpanFile) -> None:
    signal = Signal()
    calls: list[int] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        calls.append(1)

    signal.connect(receiver)  # weak by default
    signal.send(sender=None)
    assert signal.disconnect(receiver)
    signal.send(sender=None)
    assert calls == [1]
    # a signal that is no module's attribute (and not named with name_signal)
    assert [s["name"] for s in spans_of.spans()] == ["event:Signal"]


def test_setting_changed_is_not_traced_by_default(spans_of: SpanFile) -> None:
    # override_settings sends setting_changed twice per use: in a test suite it would
    # make most of the spans.
    seen: list[str] = []

    def on_change(sender: Any, setting: str = "", **kwargs: Any) -> None:
        seen.append(setting)

    from django.core.signals import setting_changed

    setting_changed.connect(on_change)
    try:
        with infratrace.begin("test"), override_settings(SOME_FLAG=True):
            pass
    finally:
        setting_changed.disconnect(on_change)
    assert seen == ["SOME_FLAG", "SOME_FLAG"]
    assert not [s for s in spans_of.spans() if s["name"] == "event:setting_changed"]
