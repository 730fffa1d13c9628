"""``infratrace-run``'s Celery instrumentation (entry point ``celery.app.base`` of the
group ``infratrace.instrumentations``): every ``Celery`` app gets
:func:`infratrace_celery.instrument` at the end of its constructor, in the process that
sends tasks and in the worker (its prefork children inherit it).

An ``instrument()`` the program made itself is kept: the app is instrumented only
when nothing instrumented Celery yet, or when this module did (a second app then
becomes the one whose ``app.conf.infratrace`` the worker reads, as a second
``instrument(app)`` call would make it); a later ``instrument(app, ...)`` in the
program replaces these options."""

from __future__ import annotations

import functools
import sys
from types import ModuleType
from typing import Any

from . import instrument as instrument_app
from . import is_instrumented

__all__ = ["instrument"]

MARK = "__infratrace_auto__"
_made_by_us: list[bool] = [False]  # whether the instrumentation in place is this module's


def instrument(module: ModuleType) -> None:
    """Instrument every ``celery.Celery`` app made from now on."""
    celery_class = module.Celery
    original = celery_class.__init__
    if getattr(original, MARK, False):
        return

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        instrument_new_app(self)

    setattr(__init__, MARK, True)
    celery_class.__init__ = __init__


def instrument_new_app(app: Any) -> None:
    try:
        if is_instrumented() and not _made_by_us[0]:
            return
        instrument_app(app)
        _made_by_us[0] = True
    except Exception as exc:
        print(f"infratrace: celery app {getattr(app, 'main', '?')!r} not traced: {type(exc).__name__}: {exc}", file=sys.stderr)
