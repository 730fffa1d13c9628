"""Run by tests/test_packaging.py inside a fresh venv where infratrace and its adapters
were installed from the built wheelhouse: it checks they are imported from that venv
(not from a source tree), sends one traced request through each web framework's test
client, runs a SQLAlchemy query and publishes a Celery task, and writes every span as
JSON lines to the file named by its first argument. It prints one JSON object: where
each module was imported from and what each request answered.

    python packaging_probe.py SPANS.jsonl
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

MODULES = (
    "infratrace",
    "infratrace_asgi",
    "infratrace_django",
    "infratrace_flask",
    "infratrace_celery",
    "infratrace_http",
    "infratrace_sqlalchemy",
)


def django_request() -> tuple[int, str]:
    import django
    from django.conf import settings
    from django.http import HttpRequest, HttpResponse
    from django.test import Client
    from django.urls import path

    def hello(request: HttpRequest, n: int) -> HttpResponse:
        return HttpResponse(f"django {n}")

    settings.configure(
        DEBUG=False,
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["testserver"],
        INSTALLED_APPS=["infratrace_django"],
        MIDDLEWARE=["infratrace_django.TraceMiddleware"],
        DATABASES={},
    )
    globals()["urlpatterns"] = [path("hello/<int:n>/", hello)]
    django.setup()
    response = Client().get("/hello/1/")
    return response.status_code, response.content.decode()


def flask_request() -> tuple[int, str]:
    """The Flask app on a real werkzeug server on 127.0.0.1, called through httpx with
    infratrace-http's client spans: the server span continues the client's trace."""
    import threading

    import httpx
    import infratrace_http.httpx
    from flask import Flask
    from infratrace_flask import InfraTrace
    from werkzeug.serving import make_server

    import infratrace

    app = Flask("packaged")

    @app.get("/hello/<int:n>")
    def hello(n: int) -> str:
        return f"flask {n}"

    InfraTrace(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    infratrace_http.httpx.instrument()
    try:
        with infratrace.begin("service:packaged.call"):
            response = httpx.get(f"http://127.0.0.1:{server.server_port}/hello/2", timeout=10)
    finally:
        server.shutdown()
        thread.join(10)
    return response.status_code, response.text


def starlette_request() -> tuple[int, str]:
    from infratrace_asgi import TraceMiddleware
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"starlette {request.path_params['n']}")

    app = Starlette(routes=[Route("/hello/{n:int}", hello)])
    app.add_middleware(TraceMiddleware)
    with TestClient(app) as client:
        response = client.get("/hello/3")
    return response.status_code, response.text


def sqlalchemy_query() -> Any:
    import infratrace_sqlalchemy
    import sqlalchemy

    import infratrace

    engine = sqlalchemy.create_engine("sqlite://")
    infratrace_sqlalchemy.instrument(engine)
    with infratrace.begin("service:packaged.query"), engine.connect() as connection:
        return connection.execute(sqlalchemy.text("SELECT 1")).scalar()


def celery_publish() -> str:
    import celery
    import infratrace_celery

    import infratrace

    app = celery.Celery("packaged", broker="memory://")
    infratrace_celery.instrument(app)

    @app.task(name="packaged.add")
    def add(x: int, y: int) -> int:
        return x + y

    with infratrace.begin("service:packaged.send"):
        return str(add.delay(1, 2).id)


def main() -> int:
    spans = Path(sys.argv[1])
    import infratrace

    infratrace.configure({"trace": {"file": {"driver": "file", "json": True, "setting": {"output": str(spans)}}}})
    report: dict[str, Any] = {
        "prefix": sys.prefix,
        "path": sys.path,
        "files": {name: importlib.import_module(name).__file__ for name in MODULES},
        "django": django_request(),
        "flask": flask_request(),
        "starlette": starlette_request(),
        "sqlalchemy": sqlalchemy_query(),
        "celery": celery_publish(),
    }
    report["flushed"] = infratrace.shutdown(10)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
