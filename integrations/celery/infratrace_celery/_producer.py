"""Publish side: a ``queue:<task>`` producer span around every message a task sends
(``trigger:<entry>`` when beat sends it), with its trace context in the headers.

``before_task_publish`` begins the span and writes the headers; ``after_task_publish``
ends it. When publishing raises, Celery sends no signal at all, so each app's
``send_task_message`` is wrapped (the only non-signal hook of the adapter) to end the
pending span with the error before the exception goes on to the caller."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import infratrace
from infratrace import NonRecordingSpan, Span

from ._attributes import attempt_of, message_attributes
from ._beat import beat_entry_name, beat_may_publish
from ._headers import write_context
from ._state import state

__all__ = ["after_publish", "before_publish", "guard_app", "unguard_apps"]

AnySpan = Span | NonRecordingSpan
_MISSING: Any = object()

# task id -> producer span between before_ and after_task_publish (same thread).
_pending: dict[str, AnySpan] = {}
# task name -> the task's own ``infratrace_propagate`` (only names found in a registry).
_task_propagates: dict[str, bool] = {}
# app -> (its AMQP object, the send_task_message we wrapped)
_guarded: weakref.WeakKeyDictionary[Any, tuple[Any, Callable[..., Any]]] = weakref.WeakKeyDictionary()
# apps whose guard waits for their configuration
_waiting: weakref.WeakSet[Any] = weakref.WeakSet()


def _task_id(body: Any, headers: Mapping[str, Any]) -> Any:
    task_id = headers.get("id")
    if task_id is None and isinstance(body, Mapping):  # task protocol 1
        task_id = body.get("id")
    return task_id


def propagates(name: str) -> bool:
    """Whether ``traceparent`` goes into messages of task ``name`` (publish side)."""
    options = state.options
    if options is None or not options.propagate or name in options.no_propagate:
        return False
    cached = _task_propagates.get(name)
    if cached is not None:
        return cached
    app = state.app
    if app is None:
        return True
    try:
        task = app.tasks.get(name)
    except Exception:
        return True
    if task is None:
        return True  # send_task() of a task this process does not know
    allowed = getattr(task, "infratrace_propagate", True) is not False
    _task_propagates[name] = allowed
    return allowed


class _Publish:
    """What every publish of one task name shares, worked out once per name: the
    span name, the attributes that do not change per message, and whether the
    context goes into the headers."""

    __slots__ = ("attrs", "propagate", "span_name")

    def __init__(self, span_name: str, attrs: dict[str, Any], propagate: bool) -> None:
        self.span_name = span_name
        self.attrs = attrs
        self.propagate = propagate


# task name -> its _Publish, or None when the task is excluded (cleared by instrument()).
_publish_info: dict[str, _Publish | None] = {}


def _info_for(name: str) -> _Publish | None:
    options = state.options
    if options is None or name in options.excluded_tasks:
        info = None
    else:
        static = message_attributes(state.service, "queue", name, name, "publish", None, None, 1)
        del static["attempt"]  # per message
        info = _Publish(f"queue:{name}", static, propagates(name))
    if len(_publish_info) < 4096:
        _publish_info[name] = info
    return info


# The hot receivers name every argument Celery passes (unused ones included): binding
# them to parameters is about half the cost of collecting them into ``**kwargs``.
def before_publish(
    signal: Any = None,
    sender: Any = None,
    body: Any = None,
    exchange: Any = None,
    routing_key: Any = None,
    declare: Any = None,
    headers: MutableMapping[str, Any] | None = None,
    properties: Any = None,
    retry_policy: Any = None,
    **_: Any,
) -> None:
    try:
        if state.options is None or headers is None or not isinstance(sender, str):
            return
        info: _Publish | None = _publish_info.get(sender, _MISSING)
        if info is _MISSING:
            info = _info_for(sender)
        if info is None:
            return  # excluded task
        task_id = headers.get("id")
        if task_id is None:
            task_id = _task_id(body, headers)
        retries = headers.get("retries")
        from_beat = beat_may_publish() or headers.get("celery_beat_task")
        entry = beat_entry_name(sender, body, headers) if from_beat else None
        if entry is None:
            name = info.span_name
            attrs = info.attrs.copy()
        else:
            name = f"trigger:{entry}"
            attrs = message_attributes(state.service, "trigger", entry, sender, "publish", None, None, 1)
            attrs["celery.beat.entry"] = entry
        attrs["attempt"] = retries + 1 if type(retries) is int else attempt_of(retries)
        if task_id:
            attrs["messaging.message.id"] = task_id if type(task_id) is str else str(task_id)
        if routing_key:
            attrs["messaging.destination.name"] = routing_key if type(routing_key) is str else str(routing_key)
        span = infratrace.start_span(name, attrs, kind="producer")
        if info.propagate:
            write_context(headers, span, time.time_ns())
        if task_id is None:
            span.end()
        else:
            _pending[task_id if type(task_id) is str else str(task_id)] = span
    except Exception:
        pass  # tracing never breaks a publish


def after_publish(
    signal: Any = None,
    sender: Any = None,
    body: Any = None,
    headers: Mapping[str, Any] | None = None,
    exchange: Any = None,
    routing_key: Any = None,
    **_: Any,
) -> None:
    try:
        if headers is None:
            return
        task_id = headers.get("id")
        if task_id is None:
            task_id = _task_id(body, headers)
            if task_id is None:
                return
        span = _pending.pop(task_id if type(task_id) is str else str(task_id), None)
        if span is not None:
            span.end()
    except Exception:
        pass


def _abandon(message: Any, exc: BaseException) -> None:
    """Publishing raised: end the pending span as an error."""
    try:
        headers, _properties, body = message[0], message[1], message[2]
        task_id = _task_id(body, headers) if isinstance(headers, Mapping) else None
        span = _pending.pop(str(task_id), None) if task_id is not None else None
        if span is not None:
            span.set_attribute("celery.publish_failed", True)
            span.end(exc)
    except Exception:
        pass


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    def send_task_message(producer: Any, name: Any, message: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(producer, name, message, *args, **kwargs)
        except BaseException as exc:
            _abandon(message, exc)
            raise

    send_task_message.__wrapped__ = original  # type: ignore[attr-defined]
    send_task_message.infratrace_guard = True  # type: ignore[attr-defined]
    return send_task_message


def _install(app: Any) -> None:
    try:
        if state.options is None or app in _guarded:
            return
        amqp = app.amqp
        original = amqp.send_task_message
        if getattr(original, "infratrace_guard", False):
            return
        amqp.send_task_message = _wrap(original)
        _guarded[app] = (amqp, original)
    except Exception:
        pass


def _install_when_configured(sender: Any = None, **_: Any) -> None:
    if sender is not None:
        _install(sender)


def guard_app(app: Any) -> None:
    """Wrap the app's ``send_task_message`` (now, or once the app is configured:
    building it earlier would read the configuration before the user finished it)."""
    try:
        if app.configured:
            _install(app)
        else:
            app.on_after_configure.connect(
                _install_when_configured, sender=app, weak=False, dispatch_uid=f"infratrace-guard-{id(app)}"
            )
            _waiting.add(app)
    except Exception:
        pass


def guard_finalized_app(app: Any) -> None:
    """For ``instrument()`` without an app: every app finalized later gets the guard."""
    if state.options is not None and state.guard_all_apps:
        guard_app(app)


def unguard_apps() -> None:
    for amqp, original in list(_guarded.values()):
        try:
            current = amqp.__dict__.get("send_task_message")
            if getattr(current, "__wrapped__", None) is original:
                amqp.send_task_message = original
        except Exception:
            pass
    for app in list(_waiting):
        try:
            app.on_after_configure.disconnect(sender=app, dispatch_uid=f"infratrace-guard-{id(app)}")
        except Exception:
            pass
    _waiting.clear()
    _guarded.clear()
    _pending.clear()
    _task_propagates.clear()
    _publish_info.clear()
