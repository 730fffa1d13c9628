"""Settings for Django's own ``tests/runtests.py`` in a framework-suite run: its
``test_sqlite`` settings (or PostgreSQL with ``$INFRATRACE_SUITE_DATABASE=postgresql``),
the recording test runner and, in the traced run (``$INFRATRACE_SUITE_TRACES`` set),
infratrace as a project adds it: ``infratrace_django`` in ``INSTALLED_APPS`` and
``infratrace_django.TraceMiddleware`` first in ``MIDDLEWARE`` (and, with
``$INFRATRACE_SUITE_ALL_SIGNALS``, every signal traced: no default deny list).

``runtests.py`` replaces both settings with its own lists (``ALWAYS_INSTALLED_APPS``,
``ALWAYS_MIDDLEWARE``) once these settings are loaded, so those lists get the entries
too; tests that override ``MIDDLEWARE`` run without the middleware, as they would in a
project."""

import os
import sys

from test_sqlite import *  # noqa: F403

TEST_RUNNER = "infratrace_suite_runner.RecordingRunner"

if os.environ.get("INFRATRACE_SUITE_DATABASE") == "postgresql":
    _postgres = {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("INFRATRACE_SUITE_PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("INFRATRACE_SUITE_PGPORT", "5432"),
        "USER": os.environ.get("INFRATRACE_SUITE_PGUSER", "postgres"),
    }
    DATABASES = {
        "default": {**_postgres, "NAME": "infratrace_suite", "TEST": {"NAME": "test_infratrace_suite"}},
        "other": {**_postgres, "NAME": "infratrace_suite_other", "TEST": {"NAME": "test_infratrace_suite_other"}},
    }

if os.environ.get("INFRATRACE_SUITE_TRACES"):
    if os.environ.get("INFRATRACE_SUITE_ALL_SIGNALS"):  # setting_changed, pre_init... too
        INFRATRACE_DJANGO = {"signal_deny": []}
    INSTALLED_APPS = ["infratrace_django"]
    MIDDLEWARE = ["infratrace_django.TraceMiddleware"]
    _runtests = sys.modules.get("__main__")
    _apps = getattr(_runtests, "ALWAYS_INSTALLED_APPS", None)
    _middleware = getattr(_runtests, "ALWAYS_MIDDLEWARE", None)
    if not isinstance(_apps, list) or not isinstance(_middleware, list):
        raise RuntimeError("infratrace_suite_settings: run through Django's tests/runtests.py")
    if "infratrace_django" not in _apps:
        _apps.append("infratrace_django")
    if "infratrace_django.TraceMiddleware" not in _middleware:
        _middleware.insert(0, "infratrace_django.TraceMiddleware")
