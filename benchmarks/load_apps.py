"""The apps that ``load.py`` serves with real servers, one per framework, each in the
variant named by ``$LOAD_VARIANT``:

- ``bare``: no tracing;
- ``infratrace``: the framework's infratrace adapter, configured from the TOML file
  ``$INFRATRACE_CONFIG`` (``load.py`` writes it: the file driver, JSON lines; or file +
  otlp to a local receiver);
- ``otel``: OpenTelemetry's instrumentation for the framework, SDK ``TracerProvider`` +
  ``BatchSpanProcessor`` with an exporter that discards the spans;
- ``otel-lean`` (ASGI only): OpenTelemetry's ASGI middleware with
  ``exclude_spans=["receive", "send"]`` (one span per request);
- ``wrapper-only`` (Flask and Starlette): a middleware that sees the status and reads
  the clock, nothing else: the floor of any tracer's server-span middleware.

Each app answers ``GET /hello`` with a short text. The servers import an attribute of
this module by name (``load_apps:flask_app``, ``load_apps:starlette_app``,
``load_apps:django_wsgi``, ``load_apps:django_asgi``, ``load_apps:celery_app``); each
is built on first access, in the server's worker process.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

VARIANT = os.environ.get("LOAD_VARIANT", "bare")
BODY = "hello"


def _otel_provider() -> Any:
    from _baseline import otel_provider

    provider, _ = otel_provider(max_queue_size=2048)  # OpenTelemetry's default queue
    return provider


def _configure_infratrace() -> None:
    import infratrace

    infratrace.configure(os.environ["INFRATRACE_CONFIG"])
    _no_sink()


def _no_sink() -> None:
    """``infratrace-nosink``: spans begin and end, and are handed to a sink that drops
    them (no pipeline work at all): the request thread's share alone."""
    if VARIANT == "infratrace-nosink":
        from infratrace._sampling import LocalTrace
        from infratrace._span import set_sink

        class Drop:
            kept = LocalTrace(None, 1, 0, 1, "", 0)

            def local_root(self, span: object, flags: int | None, tracestate: str) -> LocalTrace:
                return self.kept

            def append(self, span: object) -> None:
                pass

        set_sink(Drop())


class _WsgiWrapperOnly:
    """``wrapper-only`` (WSGI): what any server-span middleware does at least — see the
    status, read the clock twice — and no tracing: the floor of the overhead."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        start = time.perf_counter_ns()
        seen: list[str] = []

        def status_seen(status: str, headers: Any, exc_info: Any = None) -> Any:
            seen.append(status)
            return start_response(status, headers, exc_info)

        body = self.app(environ, status_seen)
        self.elapsed = time.perf_counter_ns() - start
        return body


class _AsgiWrapperOnly:
    """``wrapper-only`` (ASGI): the same for an ASGI app (``send`` wrapped)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter_ns()
        seen: list[int] = []

        async def status_seen(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen.append(message["status"])
            await send(message)

        await self.app(scope, receive, status_seen)
        self.elapsed = time.perf_counter_ns() - start


def build_flask() -> Any:
    from flask import Flask

    app = Flask("load")

    @app.get("/hello")
    def hello() -> str:
        return BODY

    if VARIANT.startswith("infratrace"):
        from infratrace_flask import InfraTrace

        app.config["INFRATRACE"] = os.environ["INFRATRACE_CONFIG"]
        InfraTrace(app)
        _no_sink()
    elif VARIANT == "otel":
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        FlaskInstrumentor.instrument_app(app, tracer_provider=_otel_provider())
    elif VARIANT == "wrapper-only":
        app.wsgi_app = _WsgiWrapperOnly(app.wsgi_app)  # type: ignore[method-assign]
    return app


def build_starlette() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse(BODY)

    app = Starlette(routes=[Route("/hello", hello)])
    if VARIANT.startswith("infratrace"):
        from infratrace_asgi import TraceMiddleware

        _configure_infratrace()
        app.add_middleware(TraceMiddleware)
    elif VARIANT == "otel":
        from opentelemetry.instrumentation.starlette import StarletteInstrumentor

        StarletteInstrumentor.instrument_app(app, tracer_provider=_otel_provider())
    elif VARIANT == "otel-lean":
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
        from opentelemetry.instrumentation.starlette import _get_default_span_details

        app.add_middleware(
            OpenTelemetryMiddleware,
            default_span_details=_get_default_span_details,
            tracer_provider=_otel_provider(),
            exclude_spans=["receive", "send"],
        )
    elif VARIANT == "wrapper-only":
        app.add_middleware(_AsgiWrapperOnly)
    return app


# -- Django: this module is also its URLconf ------------------------------------------
def _django_hello(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse(BODY, content_type="text/plain")


urlpatterns: list[Any] = []


def _setup_django() -> None:
    import django
    from django.conf import settings
    from django.urls import path

    if settings.configured:
        return
    middleware: list[str] = []
    options: dict[str, Any] = {}
    if VARIANT.startswith("infratrace"):
        middleware = ["infratrace_django.TraceMiddleware"]
        options = {"INFRATRACE": os.environ["INFRATRACE_CONFIG"]}
    settings.configure(
        DEBUG=False,
        SECRET_KEY="load-benchmark",
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=middleware,
        INSTALLED_APPS=["infratrace_django"] if middleware else [],
        USE_TZ=True,
        **options,
    )
    urlpatterns[:] = [path("hello", _django_hello)]
    if VARIANT in ("otel", "otel-lean"):
        from opentelemetry.instrumentation.django import DjangoInstrumentor

        DjangoInstrumentor().instrument(tracer_provider=_otel_provider())
    django.setup()


def build_django_wsgi() -> Any:
    _setup_django()
    from django.core.handlers.wsgi import WSGIHandler

    handler = WSGIHandler()
    _no_sink()
    return handler


def build_django_asgi() -> Any:
    _setup_django()
    from django.core.handlers.asgi import ASGIHandler

    handler = ASGIHandler()
    _no_sink()
    return handler


# -- Celery ------------------------------------------------------------------------------
CELERY_BROKER = os.environ.get("LOAD_BROKER", "redis://127.0.0.1:6379/14")
CELERY_QUEUE = "load-celery"
CELERY_COUNTER = "load-celery:done"


def build_celery() -> Any:
    import redis
    from celery import Celery, signals

    app = Celery("load", broker=CELERY_BROKER, set_as_current=True)
    app.conf.update(
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        task_default_queue=CELERY_QUEUE,
        task_serializer="json",
        worker_prefetch_multiplier=16,
        worker_hijack_root_logger=False,
    )
    client = redis.Redis.from_url(CELERY_BROKER)

    @app.task(name="load.add")
    def add(x: int, y: int) -> int:
        client.incr(CELERY_COUNTER)
        return x + y

    if VARIANT == "signals":  # receivers that do nothing: what Celery's signal dispatch costs alone

        def nothing(**_: Any) -> None:
            pass

        for signal in (signals.task_prerun, signals.task_postrun, signals.before_task_publish, signals.after_task_publish):
            signal.connect(nothing, weak=False)
    elif VARIANT.startswith("infratrace"):
        app.conf.infratrace = os.environ["INFRATRACE_CONFIG"]
        import infratrace_celery

        infratrace_celery.instrument(app)
    elif VARIANT == "otel":

        @signals.worker_process_init.connect(weak=False)
        def _otel(**_: Any) -> None:
            from opentelemetry.instrumentation.celery import CeleryInstrumentor

            CeleryInstrumentor().instrument(tracer_provider=_otel_provider())

    return app


_BUILDERS = {
    "flask_app": build_flask,
    "starlette_app": build_starlette,
    "django_wsgi": build_django_wsgi,
    "django_asgi": build_django_asgi,
    "celery_app": build_celery,
}
_BUILT: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    builder = _BUILDERS.get(name)
    if builder is None:
        raise AttributeError(name)
    if name not in _BUILT:
        _BUILT[name] = builder()
    return _BUILT[name]
