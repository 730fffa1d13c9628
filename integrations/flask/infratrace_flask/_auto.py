"""``infratrace-run``'s Flask instrumentation (entry point ``flask`` of the group
``infratrace.instrumentations``): once ``flask`` is imported, every ``Flask`` app gets
``InfraTrace(app)`` at the end of its constructor, unless the app already has the
extension. Calling ``InfraTrace(app)``/``init_app(app)`` again in the program's own
code replaces the options (the extension wraps nothing twice)."""

from __future__ import annotations

import functools
import sys
from types import ModuleType
from typing import Any

from ._extension import InfraTrace
from ._signals import EXTENSION_KEY

__all__ = ["instrument"]

MARK = "__infratrace_auto__"


def instrument(module: ModuleType) -> None:
    """Trace every ``flask.Flask`` app made from now on."""
    flask_class = module.Flask
    original = flask_class.__init__
    if getattr(original, MARK, False):
        return

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        trace_app(self)

    setattr(__init__, MARK, True)
    flask_class.__init__ = __init__


def trace_app(app: Any) -> None:
    """``InfraTrace(app)`` unless the app has it; a failure is one line on stderr and
    leaves the app untraced."""
    try:
        if EXTENSION_KEY not in app.extensions:
            InfraTrace(app)
    except Exception as exc:
        print(f"infratrace: flask app {getattr(app, 'name', '?')!r} not traced: {type(exc).__name__}: {exc}", file=sys.stderr)
