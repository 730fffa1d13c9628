"""A minimal Django project traced by infratrace: no database, the trace middleware
first, configuration from ``$INFRATRACE_CONFIG`` (the demo points it at
example_apps/infratrace.toml) or the defaults (console)."""

from __future__ import annotations

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
DATABASES: dict[str, object] = {}
USE_TZ = True
WSGI_APPLICATION = "example_apps.django_app.wsgi.application"

# INFRATRACE = BASE_DIR / "infratrace.toml"   # unset: $INFRATRACE_CONFIG, else the console
INFRATRACE_DJANGO = {
    "service": "django-shop",
    "excluded_paths": [r"^/health/$"],
    "request_headers": ["x-request-id"],
    "response_traceparent": True,
}
