"""A traced Flask app lives exactly as long as without the extension: Flask frees an app
as soon as its last reference goes, without the garbage collector (Flask's own
``test_app_freed_on_zero_refcount``), and ``app.wsgi_app`` held on its own keeps the
app alive and working."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask
from infratrace_flask import InfraTrace
from werkzeug.test import Client

from .conftest import Trace

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


@pytest.fixture
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def traced_app(**options: Any) -> Flask:
    app = Flask("tests.flask.lifetime")
    app.add_url_rule("/hello", "hello", lambda: "hello")
    InfraTrace(app, **options)
    return app


def test_a_traced_app_is_freed_on_zero_refcount(spans: Callable[[], Trace], no_gc: None) -> None:
    app = traced_app(request_hook=lambda span, request: None)
    assert app.test_client().get("/hello").data == b"hello"
    weak = weakref.ref(app)
    del app
    assert weak() is None
    (server,) = [s for s in spans().spans if s["name"] == "http:GET /hello"]
    assert server["status"] == "ok"


def test_an_app_with_its_own_wsgi_middleware_is_freed_like_without_tracing(no_gc: None) -> None:
    class Middleware:
        def __init__(self, wsgi_app: Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]) -> None:
            self.wsgi_app = wsgi_app

        def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            return self.wsgi_app(environ, start_response)

    def survives(traced: bool) -> bool:
        app = Flask("tests.flask.lifetime")
        app.wsgi_app = Middleware(app.wsgi_app)  # type: ignore[method-assign]  # a cycle of the app's own
        if traced:
            InfraTrace(app)
        weak = weakref.ref(app)
        del app
        alive = weak() is not None
        gc.collect()
        return alive

    assert survives(traced=True) is survives(traced=False)


def test_wsgi_app_held_without_the_app_keeps_it_alive_and_traced(spans: Callable[[], Trace], no_gc: None) -> None:
    wsgi_app = traced_app().wsgi_app
    gc.collect()
    response = Client(wsgi_app).get("/hello")
    assert response.status_code == 200 and response.get_data() == b"hello"
    assert "http:GET /hello" in spans().names()


def test_every_app_keeps_its_own_middleware(spans: Callable[[], Trace]) -> None:
    first, second = traced_app(), traced_app(excluded_paths=["^/hello"])
    plain = Flask("tests.flask.untraced")
    plain.add_url_rule("/hello", "hello", lambda: "plain")
    for app in (first, second, plain):
        assert app.test_client().get("/hello").status_code == 200
    assert plain.test_client().get("/hello").data == b"plain"
    assert spans().names().count("http:GET /hello") == 1  # the first app's; the second excludes it
