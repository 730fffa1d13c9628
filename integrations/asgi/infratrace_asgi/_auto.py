"""``infratrace-run``'s Starlette/FastAPI instrumentation (entry point
``starlette.applications`` of the group ``infratrace.instrumentations``): every
``Starlette`` app, ``FastAPI`` and other subclasses included, builds its middleware
stack inside :class:`TraceMiddleware`, outermost (around Starlette's
``ServerErrorMiddleware``, so the span covers every middleware and the 500 page),
unless the program added ``TraceMiddleware`` itself.

The stack is built once per app, at its first request or lifespan event, with the
middleware the program added by then. A subclass that builds its stack its own way
(FastAPI does) has its method wrapped when the class is made."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ._middleware import TraceMiddleware

__all__ = ["instrument"]

MARK = "__infratrace_auto__"
METHOD = "build_middleware_stack"


def instrument(module: ModuleType) -> None:
    """Wrap ``Starlette.build_middleware_stack``, and that of every subclass that
    defines its own, made now or later."""
    starlette = module.Starlette
    _wrap_class(starlette)
    previous = starlette.__dict__.get("__init_subclass__")
    if getattr(previous, MARK, False):
        return
    parent_hook = previous.__func__ if isinstance(previous, classmethod) else None

    def __init_subclass__(cls: type, /, **kwargs: Any) -> None:
        if parent_hook is not None:
            parent_hook(cls, **kwargs)
        else:
            super(starlette, cls).__init_subclass__(**kwargs)
        _wrap_class(cls)

    setattr(__init_subclass__, MARK, True)
    starlette.__init_subclass__ = classmethod(__init_subclass__)
    for subclass in _subclasses(starlette):  # classes made before (none under infratrace-run)
        _wrap_class(subclass)


def _subclasses(cls: type) -> list[type]:
    found: list[type] = []
    sub: type
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found


def _wrap_class(cls: type) -> None:
    build = cls.__dict__.get(METHOD)
    if build is None or getattr(build, MARK, False) or not callable(build):
        return
    setattr(cls, METHOD, _wrap_build(build))


def _wrap_build(build: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @functools.wraps(build)
    def build_middleware_stack(self: Any) -> Any:
        return outermost(self, build(self))

    setattr(build_middleware_stack, MARK, True)
    return build_middleware_stack


def outermost(app: Any, stack: Any) -> Any:
    """``stack`` inside ``TraceMiddleware``, unless it is one already (a subclass's
    method calling its parent's) or the program added one; on a failure, ``stack``
    as it is and one line on stderr."""
    try:
        if isinstance(stack, TraceMiddleware):
            return stack
        if any(getattr(entry, "cls", None) is TraceMiddleware for entry in getattr(app, "user_middleware", ())):
            return stack
        return TraceMiddleware(stack)
    except Exception as exc:
        print(f"infratrace: {type(app).__name__} app not traced: {type(exc).__name__}: {exc}", file=sys.stderr)
        return stack
