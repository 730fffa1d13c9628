"""``event:<signal>`` spans: one span per receiver call of a traced blinker signal.

Blinker has no hook around a receiver call, so a traced signal gets two instance
attributes (the class is untouched): ``receivers_for`` yields each receiver wrapped in
a span, and ``send`` maps the wrappers in its result list back to the receivers, so
callers see exactly what blinker returns without tracing. Which signals are traced is
decided per application (the sender, else the current app), so an app without the
extension — or one that excluded a signal — pays one dict lookup per send."""

from __future__ import annotations

import importlib
import inspect
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

import flask
import flask.signals
from blinker import Signal

import infratrace
from infratrace import ConfigError

__all__ = [
    "DEFAULT_SIGNALS",
    "FLASK_SIGNALS",
    "TracedSignal",
    "install",
    "mark_internal",
    "resolve_signals",
]

# Flask's own signals, by their attribute name in ``flask.signals`` (the span name).
FLASK_SIGNALS: tuple[str, ...] = (
    "template_rendered",
    "before_render_template",
    "request_started",
    "request_finished",
    "request_tearing_down",
    "got_request_exception",
    "appcontext_tearing_down",
    "appcontext_pushed",
    "appcontext_popped",
    "message_flashed",
)
# The per-request / per-context signals fire several times for every request and
# mostly carry extensions' bookkeeping: traced only when asked for.
DEFAULT_SIGNALS: tuple[str, ...] = (
    "template_rendered",
    "before_render_template",
    "got_request_exception",
    "message_flashed",
)
EXTENSION_KEY = "infratrace"
_INTERNAL = "_infratrace_internal"
_RECEIVER = "_infratrace_receiver"


class TracedSignal:
    """A signal chosen for tracing and the name its spans get (``event:<name>``)."""

    __slots__ = ("name", "signal")

    def __init__(self, name: str, signal: Signal) -> None:
        self.name = name
        self.signal = signal

    def __repr__(self) -> str:
        return f"TracedSignal({self.name!r})"


class _AppSignals(Protocol):
    """What ``app.extensions["infratrace"]`` offers this module."""

    @property
    def service(self) -> str: ...

    @property
    def traced_signal_ids(self) -> frozenset[int]: ...


def resolve_signals(include: Any, exclude: Any, prefix: str) -> tuple[TracedSignal, ...]:
    """Validate the ``signals`` (allow) and ``signals_exclude`` (deny) options.

    An entry is a Flask signal name (``template_rendered``; ``"*"`` = every Flask
    signal), a ``"package.module:attribute"`` string naming a blinker signal, or a
    blinker ``Signal`` object. Errors name ``<prefix>.signals[<i>]``."""
    chosen = _entries(DEFAULT_SIGNALS if include is None else include, f"{prefix}.signals")
    denied = {id(traced.signal) for traced in _entries(exclude or (), f"{prefix}.signals_exclude")}
    seen: set[int] = set()
    out = []
    for traced in chosen:
        key = id(traced.signal)
        if key not in denied and key not in seen:
            seen.add(key)
            out.append(traced)
    return tuple(out)


def _entries(value: Any, key: str) -> list[TracedSignal]:
    if isinstance(value, (str, Signal)):
        value = [value]
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise ConfigError(key, value, "expected a list of signal names, 'package.module:attribute' strings or Signals")
    out: list[TracedSignal] = []
    for index, item in enumerate(value):
        if item == "*":
            out.extend(TracedSignal(name, getattr(flask.signals, name)) for name in FLASK_SIGNALS)
        else:
            out.append(_entry(item, f"{key}[{index}]"))
    return out


def _entry(item: Any, key: str) -> TracedSignal:
    if isinstance(item, Signal):
        return TracedSignal(_signal_name(item), item)
    if not isinstance(item, str):
        raise ConfigError(key, item, "expected a signal name, a 'package.module:attribute' string or a Signal")
    if ":" in item:
        module_name, _, attribute = item.partition(":")
        try:
            target = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(key, item, f"cannot be imported: {exc}") from None
        if not isinstance(target, Signal):
            raise ConfigError(key, item, "does not name a blinker Signal")
        return TracedSignal(_signal_name(target, attribute), target)
    name = item.replace("-", "_")
    if name not in FLASK_SIGNALS:
        raise ConfigError(key, item, "unknown Flask signal; known: " + ", ".join(FLASK_SIGNALS) + ' (or "*")')
    return TracedSignal(name, getattr(flask.signals, name))


def _signal_name(signal: Signal, fallback: str = "signal") -> str:
    for name in FLASK_SIGNALS:
        if getattr(flask.signals, name) is signal:
            return name
    named = getattr(signal, "name", None)
    return named if isinstance(named, str) and named else fallback


def mark_internal(receiver: Callable[..., Any]) -> Callable[..., Any]:
    """The extension's own receivers are never traced."""
    setattr(receiver, _INTERNAL, True)
    return receiver


# -- installation ---------------------------------------------------------------------

_installed: dict[int, str] = {}
_install_lock = threading.Lock()


def install(traced: Iterable[TracedSignal]) -> None:
    """Make these signals traceable (idempotent; process-wide, decided per app)."""
    with _install_lock:
        for item in traced:
            if id(item.signal) not in _installed:
                _patch(item.signal, item.name)
                _installed[id(item.signal)] = item.name


def _patch(signal: Signal, name: str) -> None:
    span_name = f"event:{name}"
    signal_id = id(signal)
    receivers_for = signal.receivers_for
    send = signal.send

    def traced_receivers_for(sender: Any) -> Iterator[Callable[..., Any]]:
        receivers = receivers_for(sender)
        if not signal.receivers:
            return receivers
        settings = _settings_for(sender)
        if settings is None or signal_id not in settings.traced_signal_ids:
            return receivers
        return _wrapped(receivers, span_name, name, settings.service)

    def traced_send(*args: Any, **kwargs: Any) -> Any:
        results = send(*args, **kwargs)
        if results:
            results = [(getattr(receiver, _RECEIVER, receiver), value) for receiver, value in results]
        return results

    # Instance attributes shadow the class's methods for this signal only.
    signal.receivers_for = traced_receivers_for  # type: ignore[method-assign,assignment]
    signal.send = traced_send  # type: ignore[method-assign]


def _settings_for(sender: Any) -> _AppSignals | None:
    # Flask sends its signals with the app as sender; other signals are attributed
    # to the app whose context is active.
    extensions = getattr(sender, "extensions", None)
    if not isinstance(extensions, Mapping) and flask.has_app_context():
        extensions = flask.current_app.extensions
    if isinstance(extensions, Mapping):
        settings = extensions.get(EXTENSION_KEY)
        if settings is not None and hasattr(settings, "traced_signal_ids"):
            return settings  # type: ignore[no-any-return]
    return None


def _wrapped(
    receivers: Iterator[Callable[..., Any]], span_name: str, signal_name: str, service: str
) -> Iterator[Callable[..., Any]]:
    for receiver in receivers:
        if getattr(receiver, _INTERNAL, False):
            yield receiver
        else:
            yield _traced_receiver(receiver, span_name, _receiver_attributes(receiver, signal_name, service))


def _receiver_attributes(receiver: Callable[..., Any], signal_name: str, service: str) -> dict[str, Any]:
    func = getattr(receiver, "__func__", receiver)
    module = getattr(func, "__module__", None) or ""
    qualname = getattr(func, "__qualname__", None) or type(receiver).__qualname__
    attrs = infratrace.trace_attrs(
        service,
        "event",
        signal_name,
        {"module": module, "operation": qualname, "event.receiver": f"{module}.{qualname}" if module else qualname},
    )
    if not service:
        del attrs["service"]
    return attrs


def _traced_receiver(receiver: Callable[..., Any], span_name: str, attrs: dict[str, Any]) -> Callable[..., Any]:
    # blinker hands coroutine receivers to the sender's async wrapper (Flask: ensure_sync),
    # so the wrapper must stay a coroutine function for them.
    wrapper: Callable[..., Any]
    if inspect.iscoroutinefunction(receiver):

        async def async_wrapper(sender: Any, /, **kwargs: Any) -> Any:
            with infratrace.begin(span_name, attrs, kind="internal"):
                return await receiver(sender, **kwargs)

        wrapper = async_wrapper
    else:

        def wrapper(sender: Any, /, **kwargs: Any) -> Any:
            with infratrace.begin(span_name, attrs, kind="internal"):
                return receiver(sender, **kwargs)

    setattr(wrapper, _RECEIVER, receiver)
    return wrapper
