# mypy: disable-error-code="import-untyped"
"""``infratrace-run``'s Django instrumentation (entry point ``django`` of the group
``infratrace.instrumentations``): ``django.setup()`` — which ``manage.py``, the WSGI
and ASGI handlers, Celery's Django fix-up and test runners call before the app registry
is populated — first adds ``"infratrace_django"`` to ``settings.INSTALLED_APPS`` and
``"infratrace_django.TraceMiddleware"`` first to ``settings.MIDDLEWARE``, unless they
are there already. The settings file is not touched: the settings object is changed in
memory, in that process."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["APP", "MIDDLEWARE", "add_to_settings", "instrument"]

MARK = "__infratrace_auto__"
APP = "infratrace_django"
APP_NAMES = (APP, "infratrace_django.apps.InfratraceDjangoConfig")
MIDDLEWARE = "infratrace_django.TraceMiddleware"
MIDDLEWARE_NAMES = (MIDDLEWARE, "infratrace_django.middleware.TraceMiddleware")


def instrument(module: ModuleType) -> None:
    """Wrap ``django.setup``."""
    original: Callable[..., Any] = module.setup
    if getattr(original, MARK, False):
        return

    @functools.wraps(original)
    def setup(*args: Any, **kwargs: Any) -> Any:
        add_to_settings()
        return original(*args, **kwargs)

    setattr(setup, MARK, True)
    setattr(module, "setup", setup)  # noqa: B010


def add_to_settings() -> bool:
    """Add the app and the middleware to the configured settings; ``False`` when the
    settings cannot be read (``django.setup()`` then fails the way it would have) or
    when that failed (one line on stderr)."""
    try:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        try:
            apps = settings.INSTALLED_APPS
            middleware = settings.MIDDLEWARE
        except ImproperlyConfigured:
            return False
        if not any(name in APP_NAMES for name in apps):
            settings.INSTALLED_APPS = _same_kind(apps, [*apps, APP])
        if middleware is not None and not any(name in MIDDLEWARE_NAMES for name in middleware):
            settings.MIDDLEWARE = _same_kind(middleware, [MIDDLEWARE, *middleware])
        return True
    except Exception as exc:
        print(f"infratrace: django not instrumented: {type(exc).__name__}: {exc}", file=sys.stderr)
        return False


def _same_kind(original: Any, items: list[str]) -> Any:
    return tuple(items) if isinstance(original, tuple) else items
