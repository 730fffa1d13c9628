"""Execution side: a ``queue:<task>`` consumer span around every task run in the
worker (and every eager run), child of the producer span whose context the message
carries, current while the task body runs so the body's own spans are its children.

The open span rides on the task's request (``task.request``, one per execution, eager
retries included), so ``task_failure``/``task_retry``/``task_postrun`` find it without
a registry that could leak. Messages that never run a task body — revoked, rejected,
unknown task, or whose pool process died — get a consumer span of their own, ended at
once, so the trace shows what happened to them."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import infratrace
from infratrace import NonRecordingSpan, Span, SpanBudget, SpanContext, baggage

from ._attributes import attempt_of, message_attributes
from ._headers import baggage_from_request, context_from_headers, context_from_request
from ._state import state

__all__ = ["on_failure", "on_postrun", "on_prerun", "on_rejected", "on_retry", "on_revoked", "on_unknown"]

AnySpan = Span | NonRecordingSpan
REQUEST_SLOT = "_infratrace_span"
# task id -> consumer span running in this process (not eager): lets task_revoked
# annotate a running task instead of inventing a second span for it.
_running: dict[str, AnySpan] = {}


def _propagates(task: Any, name: str) -> bool:
    options = state.options
    return (
        options is not None
        and options.propagate
        and name not in options.no_propagate
        and getattr(task, "infratrace_propagate", True) is not False
    )


def _latency_ms(published: Any, eta: Any, now_ns: int) -> float | None:
    """Enqueue-to-start latency; for a task sent with a countdown/ETA, from its ETA."""
    if published is None:
        return None
    try:
        since = int(published)
        if eta:
            when = eta if isinstance(eta, datetime) else datetime.fromisoformat(str(eta))
            if when.tzinfo is not None:
                since = max(since, int(when.timestamp() * 1e9))
        return round((now_ns - since) / 1e6, 3)
    except Exception:
        return None


class _Run:
    """What every execution of one task name shares, worked out once per name: the
    span name and the attributes that do not change per message."""

    __slots__ = ("attrs", "span_name")

    def __init__(self, span_name: str, attrs: dict[str, Any]) -> None:
        self.span_name = span_name
        self.attrs = attrs


# task name -> its _Run, or None when the task is excluded (cleared by instrument()).
_run_info: dict[str, _Run | None] = {}
_MISSING: Any = object()


def _run_info_for(name: str) -> _Run | None:
    options = state.options
    if options is None or name in options.excluded_tasks:
        info = None
    else:
        static = message_attributes(state.service, "queue", name, name, "process", None, None, 1)
        del static["attempt"]  # per message
        info = _Run(f"queue:{name}", static)
    if len(_run_info) < 4096:
        _run_info[name] = info
    return info


def on_prerun(
    signal: Any = None,
    sender: Any = None,
    task_id: Any = None,
    task: Any = None,
    args: Any = None,
    kwargs: Any = None,
    **_: Any,
) -> None:
    # Every argument Celery passes is named (cheaper than collecting them in **_).
    try:
        options = state.options
        if options is None or task is None:
            return
        name = task.name
        info: _Run | None = _run_info.get(name, _MISSING)
        if info is _MISSING:
            info = _run_info_for(name)
        if info is None:
            return  # excluded task
        request = task.request
        eager = bool(getattr(request, "is_eager", False))
        attrs = info.attrs.copy()
        retries = request.retries
        attrs["attempt"] = retries + 1 if type(retries) is int else attempt_of(retries)
        if task_id:
            attrs["messaging.message.id"] = task_id if type(task_id) is str else str(task_id)
        delivery = getattr(request, "delivery_info", None)
        destination = delivery.get("routing_key") if type(delivery) is dict or isinstance(delivery, Mapping) else None
        if destination:
            attrs["messaging.destination.name"] = str(destination)
        parent: SpanContext | None = None
        carried: dict[str, str] = {}
        if eager:
            attrs["celery.eager"] = True
        elif _propagates(task, name):
            parent, published = context_from_request(request)
            latency = _latency_ms(published, getattr(request, "eta", None), time.time_ns())
            if latency is not None:
                attrs["celery.queue_latency_ms"] = latency
            carried = baggage_from_request(request)
        span = infratrace.begin(info.span_name, attrs, kind="consumer", parent=parent)
        budget = SpanBudget(options.span_budget).activate() if options.span_budget else None
        # The producer's baggage, for the task's run (an eager task shares its caller's).
        baggage_token = baggage.attach(carried) if carried else None
        setattr(request, REQUEST_SLOT, (span, budget, baggage_token))
        if not eager and task_id is not None:
            _running[str(task_id)] = span
    except Exception:
        pass


def _open_span(task: Any, task_id: Any) -> AnySpan | None:
    request = getattr(task, "request", None)
    slot = getattr(request, REQUEST_SLOT, None)
    if slot is None or (task_id is not None and getattr(request, "id", None) != task_id):
        return None
    span: AnySpan = slot[0]
    return span


def on_failure(sender: Any = None, task_id: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    try:
        span = _open_span(sender, task_id)
        if span is not None:
            span.set_attribute("celery.state", "FAILURE")
            if exception is not None:
                span.record_exception(exception)
            else:
                span.set_status("error", "task failed")
            return
        if _lost_in_pool(exception) and str(task_id) not in _running:
            # The pool process died or was killed (hard time limit): its span went
            # with it. Record the outcome from here.
            request = getattr(sender, "request", None)
            same = request is not None and getattr(request, "id", None) == task_id
            _emit_from_request(sender, request if same else None, task_id, "FAILURE", exception, None)
    except Exception:
        pass


def _lost_in_pool(exception: BaseException | None) -> bool:
    from celery.exceptions import TimeLimitExceeded, WorkerLostError  # type: ignore[import-untyped]

    return isinstance(exception, (TimeLimitExceeded, WorkerLostError))


def on_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    try:
        slot = getattr(request, REQUEST_SLOT, None)
        if slot is None:
            return
        span: AnySpan = slot[0]
        span.set_attribute("celery.state", "RETRY")
        span.set_attribute("celery.retry.reason", str(reason))
        exc = getattr(reason, "exc", None)
        if isinstance(exc, BaseException):
            # The attempt ends as retried, not failed: the task goes on.
            span.record_exception(exc, set_status=False)
    except Exception:
        pass


def on_postrun(
    signal: Any = None,
    sender: Any = None,
    task_id: Any = None,
    task: Any = None,
    args: Any = None,
    kwargs: Any = None,
    retval: Any = None,
    state: Any = None,
    **_: Any,
) -> None:
    try:
        request = getattr(task, "request", None)
        slot = getattr(request, REQUEST_SLOT, None)
        if slot is None:
            return
        delattr(request, REQUEST_SLOT)
        span, budget, baggage_token = slot
        if baggage_token is not None:
            baggage.detach(baggage_token)
        if task_id is not None:
            _running.pop(str(task_id), None)
        outcome = str(state) if state else ""
        if outcome:
            span.set_attribute("celery.state", outcome)
        if budget is not None:
            budget.deactivate()
        if outcome == "REJECTED":
            span.end(status="error", message="task rejected its message (Reject)")
        elif outcome == "FAILURE" and span.status != "error":
            span.end(status="error", message="task failed")
        else:
            span.end()
    except Exception:
        pass


def on_revoked(
    sender: Any = None,
    request: Any = None,
    terminated: Any = False,
    signum: Any = None,
    expired: Any = False,
    **_: Any,
) -> None:
    try:
        task_id = getattr(request, "id", None)
        why = "expired" if expired else ("terminated" if terminated else "revoked")
        running = _running.get(str(task_id))
        if running is not None:  # runs here (threads/solo pool): annotate, it ends itself
            running.set_attribute("celery.revoked", why)
            return
        _emit_from_request(sender, request, task_id, "REVOKED", None, f"task {why}", {"celery.revoked": why})
    except Exception:
        pass


def _emit_from_request(
    task: Any,
    request: Any,
    task_id: Any,
    outcome: str,
    exc: BaseException | None,
    message: str | None,
    extra: dict[str, Any] | None = None,
) -> None:
    options = state.options
    name = getattr(task, "name", None) or getattr(request, "task", None) or "unknown"
    if options is None or name in options.excluded_tasks:
        return
    parent: SpanContext | None = None
    if request is not None and _propagates(task, name):
        parent = context_from_request(request)[0]
    delivery = getattr(request, "delivery_info", None)
    destination = delivery.get("routing_key") if isinstance(delivery, Mapping) else None
    retries = getattr(request, "retries", 0) if request is not None else 0
    _emit(name, task_id, destination, retries, parent, outcome, exc, message, extra)


def _emit(
    name: str,
    task_id: Any,
    destination: Any,
    retries: Any,
    parent: SpanContext | None,
    outcome: str,
    exc: BaseException | None,
    message: str | None,
    extra: dict[str, Any] | None = None,
) -> None:
    """A consumer span begun and ended at once. Every attribute goes in before it
    ends: an ended span ignores further writes."""
    attrs = message_attributes(state.service, "queue", name, name, "process", task_id, destination, attempt_of(retries))
    attrs["celery.state"] = outcome
    if extra:
        attrs.update(extra)
    span = infratrace.start_span(f"queue:{name}", attrs, kind="consumer", parent=parent)
    if exc is not None:
        span.record_exception(exc)
        span.end()
    else:
        span.end(status="error", message=message or outcome.lower())


def _emit_from_message(message: Any, name: Any, task_id: Any, outcome: str, exc: Any, text: str) -> None:
    options = state.options
    if options is None:
        return
    headers = getattr(message, "headers", None)
    headers = headers if isinstance(headers, Mapping) else {}
    name = str(name or headers.get("task") or "unknown")
    if name in options.excluded_tasks:
        return
    propagate = options.propagate and name not in options.no_propagate
    parent = context_from_headers(headers)[0] if propagate else None
    delivery = getattr(message, "delivery_info", None)
    destination = delivery.get("routing_key") if isinstance(delivery, Mapping) else None
    _emit(
        name,
        task_id or headers.get("id"),
        destination,
        headers.get("retries"),
        parent,
        outcome,
        exc if isinstance(exc, BaseException) else None,
        text,
    )


def on_unknown(sender: Any = None, message: Any = None, exc: Any = None, name: Any = None, id: Any = None, **_: Any) -> None:
    try:
        _emit_from_message(message, name, id, "UNKNOWN", None, f"unknown task {name!r} (not registered in the worker)")
    except Exception:
        pass


def on_rejected(sender: Any = None, message: Any = None, exc: Any = None, **_: Any) -> None:
    try:
        text = f"message rejected: {exc}" if exc is not None else "message rejected: unknown message format"
        _emit_from_message(message, None, None, "REJECTED", exc, text)
    except Exception:
        pass
