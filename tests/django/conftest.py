"""Django test settings: no database, the trace middleware first, the test project's
URLs. Django is configured once per test session."""

from __future__ import annotations

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="infratrace-tests",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF="tests.django.project.urls",
        INSTALLED_APPS=["infratrace_django"],
        MIDDLEWARE=["infratrace_django.TraceMiddleware", "django.middleware.common.CommonMiddleware"],
        DATABASES={},
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup()
