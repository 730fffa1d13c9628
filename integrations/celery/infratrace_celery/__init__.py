"""infratrace Celery signal hooks: ``queue:<task>`` producer and consumer spans, one
trace from the request that sends a task to the task's own spans in the worker.

    import infratrace_celery
    app = Celery("shop", broker="redis://127.0.0.1:6379/0")
    infratrace_celery.instrument(app)

Call it where the app is defined, so both the process that sends tasks and the worker
(and beat) run it. See docs/celery.md for the options and the span attributes."""

from __future__ import annotations

import threading
from typing import Any

from . import _consumer, _producer, _worker
from ._options import CeleryOptions, TaskNames
from ._state import state

__all__ = ["CeleryOptions", "TaskNames", "instrument", "is_instrumented", "uninstrument"]

_lock = threading.Lock()


def _receivers() -> list[tuple[Any, Any]]:
    from celery import signals  # type: ignore[import-untyped]

    return [
        (signals.before_task_publish, _producer.before_publish),
        (signals.after_task_publish, _producer.after_publish),
        (signals.task_prerun, _consumer.on_prerun),
        (signals.task_failure, _consumer.on_failure),
        (signals.task_retry, _consumer.on_retry),
        (signals.task_postrun, _consumer.on_postrun),
        (signals.task_revoked, _consumer.on_revoked),
        (signals.task_rejected, _consumer.on_rejected),
        (signals.task_unknown, _consumer.on_unknown),
        (signals.worker_init, _worker.on_worker_init),
        (signals.worker_process_init, _worker.on_worker_process_init),
        (signals.worker_process_shutdown, _worker.on_worker_process_shutdown),
        (signals.worker_shutdown, _worker.on_worker_shutdown),
        (signals.beat_init, _worker.on_beat_init),
    ]


def instrument(app: Any = None, **options: Any) -> None:
    """Trace task publishes and executions (options: see :class:`CeleryOptions`).

    ``app``: the Celery app (recommended); without it every app in the process is
    instrumented. Calling it again replaces the options."""
    parsed = CeleryOptions.from_mapping(options)
    with _lock:
        state.options = parsed
        state.app = app
        state.service = parsed.service or (str(app.main) if app is not None and app.main else "celery")
        _producer._task_propagates.clear()
        _producer._publish_info.clear()
        _consumer._run_info.clear()
        for signal, receiver in _receivers():
            signal.connect(receiver, weak=False, dispatch_uid=f"infratrace_celery.{receiver.__name__}")
        if app is not None:
            state.guard_all_apps = False
            _producer.guard_app(app)
        else:
            from celery import _state as celery_state

            state.guard_all_apps = True
            for existing in list(celery_state._get_active_apps()):
                _producer.guard_app(existing)
            celery_state.connect_on_app_finalize(_producer.guard_finalized_app)


def uninstrument() -> None:
    """Undo :func:`instrument` (disconnect every signal, unwrap the apps); spans still
    open end normally. Calling it when not instrumented does nothing."""
    with _lock:
        if state.options is None:
            return
        for signal, receiver in _receivers():
            signal.disconnect(receiver, dispatch_uid=f"infratrace_celery.{receiver.__name__}")
        _producer.unguard_apps()
        _consumer._running.clear()
        state.options = None
        state.app = None
        state.guard_all_apps = False


def is_instrumented() -> bool:
    return state.options is not None
