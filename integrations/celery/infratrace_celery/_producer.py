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
# The apps' AMQP objects we guard. Weak references only: an AMQP object refers to its
# app, so holding either strongly (or as a WeakKeyDictionary's value) would keep the
# app alive for ever.
_guarded: weakref.WeakSet[Any] = weakref.WeakSet()


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
    """Guard the sender Celery builds from the app's configuration, without building it:
    Celery makes ``amqp.send_task_message`` once, on first use, from the configuration
    as it is then (compression, retry policy, serializer, routing key), so building it
    earlier would freeze a configuration the user has not finished."""
    try:
        if state.options is None:
            return
        amqp = app.amqp  # making the AMQP object reads no configuration
        if amqp in _guarded:
            return
        built = amqp.__dict__.get("send_task_message")
        if built is not None:  # Celery built it already: wrap what it built
            if not getattr(built, "infratrace_guard", False):
                amqp.send_task_message = _wrap(built)
        else:  # wrap it when Celery builds it
            create = amqp._create_task_sender

            def _create_task_sender() -> Any:
                return _wrap(create())

            _create_task_sender.infratrace_guard = True  # type: ignore[attr-defined]
            amqp._create_task_sender = _create_task_sender
        _guarded.add(amqp)
    except Exception:
        pass


def guard_app(app: Any) -> None:
    """Wrap the app's ``send_task_message``, now if Celery has built it, else when it does."""
    _install(app)


def guard_finalized_app(app: Any) -> None:
    """For ``instrument()`` without an app: every app finalized later gets the guard."""
    if state.options is not None and state.guard_all_apps:
        guard_app(app)


def unguard_apps() -> None:
    for amqp in list(_guarded):
        try:
            factory = amqp.__dict__.get("_create_task_sender")
            if getattr(factory, "infratrace_guard", False):
                del amqp._create_task_sender
            current = amqp.__dict__.get("send_task_message")
            if getattr(current, "infratrace_guard", False):
                amqp.send_task_message = current.__wrapped__
        except Exception:
            pass
    _guarded.clear()
    _pending.clear()
    _task_propagates.clear()
