"""A minimal Django project traced by infratrace: the trace middleware first,
configuration from ``$INFRATRACE_CONFIG`` (the demo points it at
example_apps/infratrace.toml) or the defaults (console).

Its database is SQLite in demo-output/ (``$EXAMPLE_SQLITE_PATH``), or PostgreSQL when
``$EXAMPLE_POSTGRES_DB`` names a database on 127.0.0.1:5432; the adapter makes a ``db:``
span for every query. Log records carry the trace and span ids (the adapter's
``log_correlation`` option), on stderr and, with ``$EXAMPLE_LOG_FILE``, in that file."""

from __future__ import annotations

import os

SECRET_KEY = "infratrace-example-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "example_apps.django_app.urls"
INSTALLED_APPS = ["infratrace_django"]
MIDDLEWARE = [
    "infratrace_django.TraceMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
if os.environ.get("EXAMPLE_POSTGRES_DB"):
    DATABASES: dict[str, object] = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ["EXAMPLE_POSTGRES_DB"],
            "HOST": "127.0.0.1",
            "PORT": "5432",
            "USER": os.environ.get("EXAMPLE_POSTGRES_USER", "postgres"),
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("EXAMPLE_SQLITE_PATH", "demo-output/shop.sqlite3"),
        }
    }
USE_TZ = True
TIME_ZONE = "UTC"
WSGI_APPLICATION = "example_apps.django_app.wsgi.application"

# INFRATRACE = BASE_DIR / "infratrace.toml"   # unset: $INFRATRACE_CONFIG, else the console
INFRATRACE_DJANGO = {
    "service": "django-shop",
    "excluded_paths": [r"^/health/$"],
    "request_headers": ["x-request-id"],
    "response_traceparent": True,
    "log_correlation": True,  # %(trace_id)s and %(span_id)s in every log record
}

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s trace=%(trace_id)s span=%(span_id)s %(message)s"
# UTC, like the spans' timestamps: the log lines and the traces read on one clock.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"traced": {"()": "example_apps.django_app.logs.UTCFormatter", "format": _LOG_FORMAT}},
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "traced"},
        **(
            {"file": {"class": "logging.FileHandler", "filename": os.environ["EXAMPLE_LOG_FILE"], "formatter": "traced"}}
            if os.environ.get("EXAMPLE_LOG_FILE")
            else {}
        ),
    },
    "loggers": {
        "example_apps": {
            "handlers": ["stderr", *(["file"] if os.environ.get("EXAMPLE_LOG_FILE") else [])],
            "level": "INFO",
        }
    },
}
