"""Tracing a signal receiver adds no Python frame between the signal's ``send()`` and
the receiver: a ``warnings.warn(..., stacklevel=N)`` in a traced receiver names the
file and line it names without tracing, and a receiver's exception has the same
traceback. Django's own ``complex_setting_changed`` receiver relies on it
(``stacklevel=5`` points at the line of the ``override_settings`` call)."""

from __future__ import annotations

import asyncio
import inspect
import linecache
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import django
import pytest
from django.dispatch import Signal
from django.test import override_settings
from infratrace_django import name_signal

from tests.conftest import SpanFile

ASYNC = django.VERSION >= (5, 0)
DISPATCHER = str(Path(sys.modules[Signal.__module__].__file__ or "").resolve())
LEVELS = (1, 2, 3, 4)
Site = tuple[str, str, int]  # (message, file, line)


@pytest.fixture
def spans(span_file: Callable[..., SpanFile]) -> Iterator[SpanFile]:
    yield span_file()


def warning_receiver(sender: Any, **kwargs: Any) -> None:
    for level in LEVELS:
        warnings.warn(f"sync stacklevel={level}", UserWarning, stacklevel=level)


async def async_warning_receiver(sender: Any, **kwargs: Any) -> None:
    for level in LEVELS:
        warnings.warn(f"async stacklevel={level}", UserWarning, stacklevel=level)


def failing_receiver(sender: Any, **kwargs: Any) -> None:
    raise LookupError("no such card")


def make_signal(*receivers: Callable[..., Any]) -> Signal:
    signal = Signal()
    for receiver in receivers:
        signal.connect(receiver, weak=False)
    name_signal(signal, "card_checked")
    return signal


def sites(send: Callable[[], Any]) -> list[Site]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        send()
    return [(str(w.message), str(Path(w.filename).resolve()), w.lineno) for w in caught]


def untraced(send: Callable[[], Any]) -> list[Site]:
    with override_settings(INFRATRACE_DJANGO={"signals": False}):
        return sites(send)


def send_now(signal: Signal) -> int:
    """Send with ``send()``; returns the line of that call."""
    line = sys._getframe().f_lineno + 1
    signal.send(sender=None)
    return line


def sends(signal: Signal) -> dict[str, Callable[[], Any]]:
    ways: dict[str, Callable[[], Any]] = {
        "send": lambda: signal.send(sender=None),
        "send_robust": lambda: signal.send_robust(sender=None),
    }
    if ASYNC:
        ways["asend"] = lambda: asyncio.run(signal.asend(sender=None))
        ways["asend_robust"] = lambda: asyncio.run(signal.asend_robust(sender=None))
    return ways


@pytest.mark.parametrize("way", ["send", "send_robust", "asend", "asend_robust"])
def test_warnings_in_traced_receivers_point_where_they_point_without_tracing(spans: SpanFile, way: str) -> None:
    if way.startswith("asend") and not ASYNC:
        pytest.skip("Signal.asend arrived in Django 5.0")
    receivers: list[Callable[..., Any]] = [warning_receiver]
    if ASYNC:
        receivers.append(async_warning_receiver)
    signal = make_signal(*receivers)
    send = sends(signal)[way]
    plain = untraced(send)
    traced = sites(send)
    assert len(plain) == len(LEVELS) * len(receivers)
    assert traced == plain
    events = [s for s in spans.spans() if s["name"] == "event:card_checked"]
    assert len(events) == len(receivers)  # the traced run really was traced


def test_stacklevel_2_names_the_signal_and_3_the_sender(spans: SpanFile) -> None:
    signal = make_signal(warning_receiver)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = send_now(signal)
    where = [(str(Path(w.filename).resolve()), w.lineno) for w in caught]
    here = str(Path(__file__).resolve())
    assert where[0][0] == here and where[1][0] == DISPATCHER
    # then Django's frames (send, and its list comprehension on Django 4.2 before
    # Python 3.12), then the line that sent the signal
    assert next(site for site in where[1:] if site[0] != DISPATCHER) == (here, line)
    assert [s["name"] for s in spans.spans()] == ["event:card_checked"]


@override_settings(INFRATRACE_DJANGO={"signal_allow": ["setting_changed"]})
def test_djangos_override_settings_warning_points_at_the_test(spans: SpanFile) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        with override_settings(DATABASES={}):
            pass
    found = [(Path(w.filename).resolve(), w.lineno) for w in caught if "Overriding setting DATABASES" in str(w.message)]
    assert found == [(Path(__file__).resolve(), line)]
    assert any(s["name"] == "event:setting_changed" for s in spans.spans())


def frames(exc: BaseException) -> list[tuple[str, int, str]]:
    return [(frame.filename, frame.lineno or 0, frame.name) for frame in traceback.extract_tb(exc.__traceback__)]


def test_a_receivers_exception_has_the_same_traceback(spans: SpanFile) -> None:
    signal = make_signal(failing_receiver)

    def raised() -> BaseException:
        try:
            signal.send(sender=None)
        except LookupError as exc:
            return exc
        raise AssertionError("the receiver did not raise")

    with override_settings(INFRATRACE_DJANGO={"signals": False}):
        plain = frames(raised())
    traced = raised()
    assert frames(traced) == plain
    assert plain[-1][2] == "failing_receiver" and str(Path(plain[-2][0]).resolve()) == DISPATCHER
    robust = signal.send_robust(sender=None)
    assert robust[0][0] is failing_receiver and isinstance(robust[0][1], LookupError)
    events = [s for s in spans.spans() if s["name"] == "event:card_checked"]
    assert len(events) == 2 and all(s["status"] == "error" for s in events)


def test_send_returns_the_receivers_themselves(spans: SpanFile) -> None:
    signal = make_signal(warning_receiver)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (receiver, response), *_ = signal.send(sender=None)
    assert receiver is warning_receiver and response is None


def test_an_async_receivers_span_is_current_inside_it_and_ends_with_its_error(spans: SpanFile) -> None:
    if not ASYNC:
        pytest.skip("async receivers arrived in Django 5.0")
    import infratrace

    async def checks(sender: Any, **kwargs: Any) -> str:
        infratrace.trace("method:inside.async")
        await asyncio.sleep(0)
        return "checked"

    async def declines(sender: Any, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        raise PermissionError("declined")

    signal = make_signal(checks, declines)
    results = asyncio.run(signal.asend_robust(sender=None))
    assert results[0] == (checks, "checked") and results[1][0] is declines
    assert isinstance(results[1][1], PermissionError)
    with pytest.raises(PermissionError):
        signal.send(sender=None)  # async receivers from a sync send: async_to_sync
    found = spans.spans()
    events = [s for s in found if s["name"] == "event:card_checked"]
    assert len(events) == 4
    by_receiver = sorted((s["attributes"]["django.signal.receiver"].rpartition(".")[2], s["status"]) for s in events)
    assert by_receiver == [("checks", "ok"), ("checks", "ok"), ("declines", "error"), ("declines", "error")]
    inner = [s for s in found if s["name"] == "method:inside.async"]
    assert {s["parent_span_id"] for s in inner} == {s["span_id"] for s in events if s["status"] == "ok"}


def test_a_cancelled_async_receiver_ends_its_span(spans: SpanFile) -> None:
    if not ASYNC:
        pytest.skip("async receivers arrived in Django 5.0")
    started = asyncio.Event()

    async def waits(sender: Any, **kwargs: Any) -> None:
        started.set()
        await asyncio.sleep(3600)

    signal = make_signal(waits)

    async def main() -> None:
        sending = asyncio.ensure_future(signal.asend(sender=None))
        await started.wait()
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending

    asyncio.run(main())
    events = [s for s in spans.spans() if s["name"] == "event:card_checked"]
    assert [s["status"] for s in events] == ["error"]


def test_a_receiver_sending_the_same_signal_nests_its_span(spans: SpanFile) -> None:
    signal = make_signal()
    depth: list[int] = []

    def again(sender: Any, **kwargs: Any) -> None:
        depth.append(kwargs["level"])
        if kwargs["level"] < 2:
            signal.send(sender=None, level=kwargs["level"] + 1)

    signal.connect(again, weak=False)
    signal.send(sender=None, level=0)
    assert depth == [0, 1, 2]
    events = sorted((s for s in spans.spans() if s["name"] == "event:card_checked"), key=lambda s: s["start_time_unix_nano"])
    assert len(events) == 3
    assert events[1]["parent_span_id"] == events[0]["span_id"]
    assert events[2]["parent_span_id"] == events[1]["span_id"]


class CountingSignal(Signal):
    """A signal whose own send() adds to a counter and calls Django's."""

    def __init__(self) -> None:
        super().__init__()
        self.sends = 0

    def send(self, sender: Any, **named: Any) -> list[tuple[Any, Any]]:
        self.sends += 1
        return super().send(sender, **named)  # type: ignore[no-any-return]


def test_an_untraced_subclass_keeps_its_own_send(spans: SpanFile) -> None:
    signal = CountingSignal()
    calls: list[int] = []
    signal.connect(lambda sender, **kwargs: calls.append(1), weak=False)
    name_signal(signal, "pre_init")  # denied by default: Django's methods are bound on it
    signal.send(sender=None)
    signal.send(sender=None)
    assert signal.sends == 2 and calls == [1, 1]
    assert "send" not in vars(signal) and "send_robust" in vars(signal)
    assert not [s for s in spans.spans() if s["name"] == "event:pre_init"]


MODULE = """
import asyncio


class Hub:
    def send(self, sender, **named):
        responses = []
        for receiver in self.receivers:
            response = receiver(signal=self, sender=sender, **named)
            responses.append((receiver, response))
        return responses

    def send_all(self, sender, **named):
        return [(receiver, receiver(signal=self, sender=sender, **named)) for receiver in self.receivers]

    async def asend(self, sender, **named):
        return await asyncio.gather(*(receiver(signal=self, sender=sender, **named) for receiver in self.receivers))
"""


def test_the_compiler_traces_every_shape_of_receiver_call(
    tmp_path: Path, spans: SpanFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infratrace_django import signals

    module_file = tmp_path / "hub_module.py"
    module_file.write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import hub_module  # type: ignore[import-not-found]

    monkeypatch.setattr(signals, "_event_name", lambda signal: "event:hub")
    hub = hub_module.Hub()

    def listens(sender: Any, **kwargs: Any) -> int:
        return 1

    async def alistens(sender: Any, **kwargs: Any) -> int:
        return 2

    hub.receivers = [listens]
    for method in ("send", "send_all"):
        traced = signals.traced_copy(getattr(hub_module.Hub, method))
        assert traced.__qualname__ == f"Hub.{method}" and traced.__code__.co_filename == str(module_file)
        assert traced(hub, sender=None) == [(listens, 1)]
    hub.receivers = [alistens]
    traced_async = signals.traced_copy(hub_module.Hub.asend)
    assert inspect.iscoroutinefunction(traced_async)
    assert asyncio.run(traced_async(hub, sender=None)) == [2]
    assert [s["name"] for s in spans.spans()] == ["event:hub"] * 3

    # the source changed on disk since it was imported: not what runs, so not traced
    module_file.write_text(MODULE.replace("responses.append", "responses.insert(0, None) or responses.append"))
    linecache.checkcache(str(module_file))
    with pytest.raises(signals.Untraceable, match="does not compile to the code that runs"):
        signals.traced_copy(hub_module.Hub.send)
    namespace: dict[str, Any] = {}
    exec("def send(self, sender):\n    return [r(signal=self, sender=sender) for r in self.receivers]\n", namespace)
    with pytest.raises(signals.Untraceable):
        signals.traced_copy(namespace["send"])  # no source file


def test_without_an_exact_copy_signals_are_untraced_and_it_says_why(
    spans: SpanFile, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from infratrace_django import signals
    from infratrace_django.apps import apply_options

    def no_copy(function: Any) -> Any:
        raise signals.Untraceable("no source for Signal.send")

    monkeypatch.setattr(signals, "traced_copy", no_copy)
    monkeypatch.setattr(signals, "_traced", None)
    monkeypatch.setattr(signals, "_untraceable", None)
    for name, method in signals.ORIGINAL_METHODS.items():
        monkeypatch.setattr(Signal, name, method)
    try:
        with caplog.at_level("WARNING", logger="infratrace_django"):
            apply_options()
        assert "Django signal receivers are not traced: no source for Signal.send" in caplog.text
        assert all(Signal.__dict__[name] is method for name, method in signals.ORIGINAL_METHODS.items())
        signal = make_signal(warning_receiver)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert signal.send(sender=None) == [(warning_receiver, None)]
        assert not spans.spans()
    finally:
        monkeypatch.undo()
        apply_options()
    assert Signal.__dict__["send"] is not signals.ORIGINAL_METHODS["send"]  # traced again


def test_what_a_test_sets_on_a_signal_is_left_alone(spans: SpanFile) -> None:
    signal = make_signal(warning_receiver)
    name_signal(signal, "pre_init")  # denied by default: Django's methods get bound on it
    with mock.patch.object(signal, "send", return_value=["mocked"]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert signal.send_robust(sender=None) == [(warning_receiver, None)]
        assert signal.send(sender=None) == ["mocked"]  # not replaced by Django's own
        name_signal(signal, "card_checked")  # re-decided: our bindings go, the mock stays
        assert signal.send(sender=None) == ["mocked"] and "send_robust" not in vars(signal)
    assert "send" not in vars(signal)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert signal.send(sender=None) == [(warning_receiver, None)]
    assert [s["name"] for s in spans.spans()] == ["event:card_checked"]
