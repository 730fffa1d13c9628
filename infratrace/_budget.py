"""Per-request span budget: at most ``limit`` spans begun inside one request (or task),
so a loop that traces every iteration cannot flood the pipeline. Spans over the
budget are not recorded (a :class:`NonRecordingSpan` keeps the trace identity) and
are counted on the budget and in ``stats()["budget_dropped_count"]``."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["SpanBudget", "active_budget", "count_of", "dropped_total", "span_budget"]

_active: ContextVar[SpanBudget | None] = ContextVar("infratrace_span_budget", default=None)
_dropped_total = itertools.count()  # next() is atomic under the GIL


class SpanBudget:
    """At most ``limit`` spans; :meth:`activate` it for a request's context."""

    __slots__ = ("_active", "_previous", "dropped", "limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.dropped = 0
        self._active = False
        self._previous: SpanBudget | None = None

    def activate(self) -> SpanBudget:
        """Make this the budget of the current context (until :meth:`deactivate`)."""
        # The budget it replaces, not a contextvars Token: a Token refers to its
        # Context, and a request's context that holds its budget would then be a
        # reference cycle, left to the garbage collector on every request.
        self._previous = _active.get()
        self._active = True
        _active.set(self)
        return self

    def deactivate(self) -> None:
        """Give the current context back the budget this one replaced (a no-op where
        this budget is not the current one any more)."""
        if self._active:
            self._active = False
            if _active.get() is self:
                _active.set(self._previous)
            self._previous = None

    def take(self) -> bool:
        """Count one span; ``False`` (and counted as dropped) when over the limit."""
        if self.used >= self.limit:
            self.dropped += 1
            next(_dropped_total)
            return False
        self.used += 1
        return True

    def __repr__(self) -> str:
        return f"SpanBudget(limit={self.limit}, used={self.used}, dropped={self.dropped})"


def active_budget() -> SpanBudget | None:
    return _active.get()


def count_of(counter: itertools.count[int]) -> int:
    """The value of an ``itertools.count`` (a counter whose ``next()`` is atomic under
    the GIL), without advancing it: it has no peek, so read its repr, ``count(N)``."""
    return int(repr(counter)[6:-1])


def dropped_total() -> int:
    """How many spans all budgets have refused in this process."""
    return count_of(_dropped_total)


@contextmanager
def span_budget(limit: int) -> Iterator[SpanBudget]:
    """``with infratrace.span_budget(1000):`` — at most 1000 spans begin inside."""
    budget = SpanBudget(limit).activate()
    try:
        yield budget
    finally:
        budget.deactivate()
