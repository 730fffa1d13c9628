"""Celery beat: which schedule entry a publish comes from, for ``trigger:<entry>`` spans.

Beat sends no signal per due entry and passes no entry name in the message, so the
adapter remembers the beat service (``beat_init``) and, when a message is published by
beat (Celery >= 5.5 marks it with the ``celery_beat_task`` header; older versions are
recognised by the publishing thread being beat's loop), looks the entry up in the
scheduler's schedule: the entry for that task (and those arguments) that was reserved
last — beat reserves an entry (stamping ``last_run_at``) right before sending it."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from typing import Any

__all__ = ["beat_entry_name", "beat_may_publish", "forget_beat", "remember_beat"]

_service: weakref.ReferenceType[Any] | None = None
_beat_thread: int | None = None


def remember_beat(service: Any) -> None:
    global _service, _beat_thread
    try:
        _service = weakref.ref(service)
    except TypeError:
        _service = None
    _beat_thread = threading.get_ident()


def forget_beat() -> None:
    global _service, _beat_thread
    _service = None
    _beat_thread = None


def beat_may_publish() -> bool:
    """Whether beat runs in this process (cheap pre-check on every publish; messages
    beat sends from elsewhere carry the ``celery_beat_task`` header)."""
    return _beat_thread is not None


def beat_entry_name(task_name: str, body: Any, headers: Mapping[str, Any]) -> str | None:
    """The schedule entry name when this publish comes from beat, else ``None``."""
    from_beat = bool(headers.get("celery_beat_task")) or (_beat_thread is not None and threading.get_ident() == _beat_thread)
    if not from_beat:
        return None
    service = _service() if _service is not None else None
    if service is None:
        return task_name
    try:
        schedule = service.scheduler.schedule
        candidates = [entry for entry in list(schedule.values()) if getattr(entry, "task", None) == task_name]
        if len(candidates) > 1:
            args, kwargs = _arguments(body)
            same = [e for e in candidates if list(e.args or ()) == args and dict(e.kwargs or {}) == kwargs]
            candidates = same or candidates
        if not candidates:
            return task_name
        latest = max(candidates, key=lambda entry: _sort_key(entry.last_run_at))
        return str(latest.name)
    except Exception:
        return task_name


def _arguments(body: Any) -> tuple[list[Any], dict[str, Any]]:
    if isinstance(body, (tuple, list)) and len(body) >= 2:  # task protocol 2
        return list(body[0] or ()), dict(body[1] or {})
    if isinstance(body, Mapping):  # task protocol 1
        return list(body.get("args") or ()), dict(body.get("kwargs") or {})
    return [], {}


def _sort_key(when: Any) -> float:
    try:
        return float(when.timestamp())
    except Exception:
        return float("-inf")
