"""Dotted paths of Django views (function views, class-based views, partials), cached:
the set of views is small and fixed, the request path is hot."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

__all__ = ["dotted_path", "view_path"]

_cache: dict[Any, str] = {}
MAX_CACHED = 4096


def dotted_path(obj: Any) -> str:
    """``package.module.QualName`` of a function, class or callable instance."""
    while isinstance(obj, functools.partial):
        obj = obj.func
    target = obj if hasattr(obj, "__qualname__") else type(obj)
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or type(obj).__name__
    return f"{module}.{name}" if module else str(name)


def view_path(view: Callable[..., Any]) -> str:
    """The view's dotted path; for ``View.as_view()`` the class, not its closure."""
    try:
        return _cache[view]
    except (KeyError, TypeError):
        pass
    target = getattr(view, "view_class", None) or getattr(view, "cls", None) or view
    path = dotted_path(target)
    try:
        if len(_cache) < MAX_CACHED:
            _cache[view] = path
    except TypeError:  # unhashable callable
        pass
    return path
