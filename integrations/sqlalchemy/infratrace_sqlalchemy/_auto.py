"""``infratrace-run``'s SQLAlchemy instrumentation (entry point ``sqlalchemy`` of the
group ``infratrace.instrumentations``): ``instrument()`` for every engine, present and
future, once SQLAlchemy is imported, unless the program did it already. Engines the
program instruments on their own keep their own options."""

from __future__ import annotations

from types import ModuleType

from ._listeners import instrument as instrument_engines
from ._listeners import instrumented

__all__ = ["instrument"]


def instrument(module: ModuleType) -> None:
    if not instrumented():
        instrument_engines()
