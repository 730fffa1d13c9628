"""infratrace for Django: ``http:``/``web:`` spans from a middleware, ``event:`` spans
for signal receivers, configuration from the Django settings.

    INSTALLED_APPS = [..., "infratrace_django"]
    MIDDLEWARE = ["infratrace_django.TraceMiddleware", ...]
    INFRATRACE = BASE_DIR / "infratrace.toml"        # or a TOML string, or a dict
    INFRATRACE_DJANGO = {"excluded_paths": ["^/health"], "response_traceparent": True}

See docs/django.md."""

from __future__ import annotations

from ._options import DEFAULT_SIGNAL_DENY, DjangoOptions, django_options
from .middleware import TraceMiddleware
from .signals import name_signal

__version__ = "0.1.0"

__all__ = ["DEFAULT_SIGNAL_DENY", "DjangoOptions", "TraceMiddleware", "__version__", "django_options", "name_signal"]
