"""The attributes every ``queue:``/``trigger:`` span of the adapter carries: infratrace's
``service``/``kind``/``target``/``operation`` beside the OTel messaging conventions."""

from __future__ import annotations

from typing import Any

__all__ = ["attempt_of", "message_attributes"]


def message_attributes(
    service: str,
    entry_kind: str,
    target: str,
    task_name: str,
    operation: str,
    task_id: Any,
    destination: Any,
    attempt: int,
) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "service": service,
        "kind": entry_kind,
        "target": target,
        "operation": operation,
        "messaging.system": "celery",
        "messaging.operation.type": operation,
        "celery.task_name": task_name,
        "attempt": attempt,
    }
    if task_id:
        attrs["messaging.message.id"] = str(task_id)
    if destination:
        attrs["messaging.destination.name"] = str(destination)
    return attrs


def attempt_of(retries: Any) -> int:
    """Celery counts retries from 0; ``attempt`` counts runs from 1."""
    try:
        return int(retries or 0) + 1
    except (TypeError, ValueError):
        return 1
