# mypy: disable-error-code="import-untyped"
"""``event:<signal>`` spans: one span per Django signal receiver call.

Django has no hook around receiver calls, and wrapping receivers where they connect
breaks weak references (``connect(weak=True)`` would hold only our wrapper, which dies
at once) and ``disconnect(receiver)``. Every ``send``/``send_robust``/``asend``/
``asend_robust`` gets its receivers from ``Signal._live_receivers(sender)``, so we wrap
that one method: the wrappers live only for one send, the registry is untouched, and
sync/async receivers keep their flavour (Django ≥ 5 returns ``(sync, async)`` lists,
4.2 one list). The wrappers compare and hash equal to the receiver they wrap, so
``dict(signal.send(...))[receiver]`` still works.

A signal object does not know its own name: we look it up once among the module
attributes of the loaded modules (``post_save``, ``user_logged_in``, your
``order_placed``); :func:`name_signal` sets it explicitly."""

from __future__ import annotations

import fnmatch
import sys
import threading
import types
import weakref
from collections.abc import Callable
from contextvars import Token
from typing import Any

import django
from django.dispatch import Signal

from infratrace.instrumentation import AnySpan, attach, detach, start_span

from ._options import DjangoOptions
from ._views import dotted_path

__all__ = ["install_signal_tracing", "name_signal", "signal_name", "uninstall_signal_tracing"]

_ORIGINAL_LIVE_RECEIVERS: Callable[..., Any] = Signal._live_receivers
_SPLIT = django.VERSION >= (5, 0)

_names: weakref.WeakKeyDictionary[Signal, str] = weakref.WeakKeyDictionary()
_decisions: weakref.WeakKeyDictionary[Signal, str | None] = weakref.WeakKeyDictionary()
_scanned_modules = 0
_lock = threading.Lock()
_policy: SignalPolicy | None = None
# Untraced signals whose instance has Django's own ``_live_receivers`` bound on it, so
# their sends (``request_started``/``request_finished`` on every request) skip our
# wrapper altogether; undone whenever the decision may change.
_bypassed: weakref.WeakSet[Signal] = weakref.WeakSet()


class SignalPolicy:
    """Which signals are traced: in ``allow`` (when given), else not in ``deny``."""

    def __init__(self, allow: tuple[str, ...], deny: tuple[str, ...], service: str = "") -> None:
        self.allow = allow
        self.deny = deny
        self.service = service

    def traced(self, name: str) -> bool:
        if self.allow:
            return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.allow)
        return not any(fnmatch.fnmatchcase(name, pattern) for pattern in self.deny)


def name_signal(signal: Signal, name: str) -> None:
    """Give ``signal`` the name its spans get (``event:<name>``)."""
    with _lock:
        _names[signal] = name
        _decisions.pop(signal, None)
        _unbypass(signal)


def signal_name(signal: Signal) -> str:
    """The signal's module attribute name, found once among the loaded modules."""
    name = _names.get(signal)
    if name is None:
        with _lock:
            name = _names.get(signal)
            if name is None:
                _scan_modules()
                name = _names.get(signal)
                if name is None:
                    name = _names[signal] = type(signal).__name__
    return name


def _scan_modules() -> None:
    """Map every module-level Signal to its attribute name (again only when new
    modules were loaded since the last scan). Django's own modules win a tie."""
    global _scanned_modules
    modules = list(sys.modules.items())
    if len(modules) == _scanned_modules:
        return
    _scanned_modules = len(modules)
    modules.sort(key=lambda item: not item[0].startswith("django."))
    for _module_name, module in modules:
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        try:
            for attr, value in list(namespace.items()):
                if isinstance(value, Signal) and value not in _names and not attr.startswith("_"):
                    _names[value] = attr
        except Exception:  # an odd module proxy: skip it
            continue


def install_signal_tracing(options: DjangoOptions) -> None:
    """Trace receivers of the signals ``options`` allows (idempotent)."""
    global _policy
    _policy = SignalPolicy(options.signal_allow, options.signal_deny, options.web.service)
    _decisions.clear()
    _unbypass_all()
    Signal._live_receivers = _traced_live_receivers


def uninstall_signal_tracing() -> None:
    global _policy
    _policy = None
    _unbypass_all()
    Signal._live_receivers = _ORIGINAL_LIVE_RECEIVERS


def _bypass(signal: Signal) -> None:
    """Bind Django's method on this (untraced) signal: the instance attribute shadows
    our class-level wrapper, so its sends cost what they cost without infratrace."""
    try:
        signal.__dict__["_live_receivers"] = types.MethodType(_ORIGINAL_LIVE_RECEIVERS, signal)
        _bypassed.add(signal)
    except Exception:  # a signal without a __dict__: keep going through the wrapper
        pass


def _unbypass(signal: Signal) -> None:
    try:
        signal.__dict__.pop("_live_receivers", None)
    except Exception:
        pass
    _bypassed.discard(signal)


def _unbypass_all() -> None:
    for signal in list(_bypassed):
        _unbypass(signal)


def _event_name(signal: Signal) -> str | None:
    try:
        return _decisions[signal]
    except KeyError:
        pass
    policy = _policy
    if policy is None:
        return None
    name = signal_name(signal)
    decision = f"event:{name}" if policy.traced(name) else None
    _decisions[signal] = decision
    return decision


def _traced_live_receivers(self: Signal, sender: Any) -> Any:
    receivers = _ORIGINAL_LIVE_RECEIVERS(self, sender)
    try:
        event = _event_name(self)
        if event is None:
            if _policy is not None:
                _bypass(self)
            return receivers
        if _SPLIT:
            sync_receivers, async_receivers = receivers
            return (
                [_wrap(receiver, event, False) for receiver in sync_receivers],
                [_wrap(receiver, event, True) for receiver in async_receivers],
            )
        return [_wrap(receiver, event, False) for receiver in receivers]
    except Exception:
        return receivers


def _wrap(receiver: Callable[..., Any], event: str, is_async: bool) -> Callable[..., Any]:
    if getattr(receiver, "__module__", "") == __name__.rpartition(".")[0] + ".middleware":
        return receiver  # our own got_request_exception receiver
    return AsyncTracedReceiver(receiver, event) if is_async else TracedReceiver(receiver, event)


class TracedReceiver:
    """A receiver call as an ``event:<signal>`` span (lives for one send)."""

    __slots__ = ("event", "receiver")

    def __init__(self, receiver: Callable[..., Any], event: str) -> None:
        self.receiver = receiver
        self.event = event

    def _start(self, sender: Any) -> AnySpan:
        path = dotted_path(self.receiver)
        name = self.event[6:]
        attrs: dict[str, Any] = {
            "kind": "event",
            "target": name,
            "module": "django",
            "operation": path,
            "django.signal": name,
            "django.signal.receiver": path,
        }
        if sender is not None:
            attrs["django.signal.sender"] = dotted_path(sender) if isinstance(sender, type) else type(sender).__name__
        policy = _policy
        if policy is not None and policy.service:
            attrs["service"] = policy.service
        return start_span(self.event, attrs, kind="internal")

    def __call__(self, signal: Any = None, sender: Any = None, **named: Any) -> Any:
        try:
            span = self._start(sender)
            token = attach(span)
        except Exception:
            return self.receiver(signal=signal, sender=sender, **named)
        try:
            result = self.receiver(signal=signal, sender=sender, **named)
        except BaseException as exc:
            _end(span, token, exc)
            raise
        _end(span, token, None)
        return result

    def __getattr__(self, name: str) -> Any:
        # send_robust() logs receiver.__qualname__; anything else asked of the
        # receiver is answered by it too.
        return getattr(self.receiver, name)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TracedReceiver):
            other = other.receiver
        return bool(self.receiver == other)

    def __hash__(self) -> int:
        return hash(self.receiver)

    def __repr__(self) -> str:
        return f"<traced {self.receiver!r}>"


def _end(span: AnySpan, token: Token[AnySpan | None], exc: BaseException | None) -> None:
    try:
        detach(token)
        span.end(exc) if exc is not None else span.end()
    except Exception:  # a faulty custom tracer must not break the send
        pass


class AsyncTracedReceiver(TracedReceiver):
    __slots__ = ()

    async def __call__(self, signal: Any = None, sender: Any = None, **named: Any) -> Any:
        try:
            span = self._start(sender)
            token = attach(span)
        except Exception:
            return await self.receiver(signal=signal, sender=sender, **named)
        try:
            result = await self.receiver(signal=signal, sender=sender, **named)
        except BaseException as exc:
            _end(span, token, exc)
            raise
        _end(span, token, None)
        return result
