"""What one instrumentation holds while it is active (signals are process-global, so
there is one): the options, and the app the worker/beat configures tracing from."""

from __future__ import annotations

from typing import Any

from ._options import CeleryOptions

__all__ = ["State", "state"]


class State:
    __slots__ = ("app", "guard_all_apps", "options", "service")

    def __init__(self) -> None:
        self.options: CeleryOptions | None = None
        self.service = "celery"
        self.app: Any = None  # the app passed to instrument(), or the worker's app
        self.guard_all_apps = False


state = State()
