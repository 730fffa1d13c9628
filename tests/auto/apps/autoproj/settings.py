"""A plain Django project: no infratrace in INSTALLED_APPS or MIDDLEWARE."""

SECRET_KEY = "tests-auto-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "autoproj.urls"
INSTALLED_APPS = ["django.contrib.contenttypes"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
WSGI_APPLICATION = "autoproj.wsgi.application"
