"""``event:<signal>`` spans for Flask and blinker signal receivers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flask
import pytest
from blinker import Namespace
from flask import Flask, flash, render_template_string

from .conftest import Trace

SpansFn = Callable[[], Trace]
custom = Namespace().signal("user-registered")


def on_template(sender: Flask, template: Any, context: dict[str, Any], **extra: Any) -> None:
    context["seen"] = True


def test_receiver_calls_are_event_spans_under_the_view(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    app = make_app(service="shop")
    app.secret_key = "test"

    @app.get("/page")
    def page() -> str:
        flash("hello")
        return render_template_string("hi {{ name }}", name="ada")

    calls: list[str] = []

    def on_flash(sender: Flask, message: str, category: str, **extra: Any) -> None:
        calls.append(message)

    flask.template_rendered.connect(on_template, app)
    flask.message_flashed.connect(on_flash, app)
    flask.request_started.connect(on_started, app)  # noise: not traced by default
    try:
        assert app.test_client().get("/page").get_data() == b"hi ada"
    finally:
        flask.template_rendered.disconnect(on_template)
        flask.message_flashed.disconnect(on_flash)
        flask.request_started.disconnect(on_started)
    assert calls == ["hello"]
    trace = spans()
    view = trace.one("web:page")
    rendered = trace.one("event:template_rendered")
    flashed = trace.one("event:message_flashed")
    assert rendered["parent_span_id"] == flashed["parent_span_id"] == view["span_id"]
    assert rendered["kind"] == "internal"
    attrs = rendered["attributes"]
    assert attrs["event.receiver"] == f"{__name__}.on_template"
    assert (attrs["kind"], attrs["target"], attrs["service"]) == ("event", "template_rendered", "shop")
    assert "event:request_started" not in trace.names()
    # signals without receivers make no spans
    assert "event:before_render_template" not in trace.names()


def test_allow_and_deny_lists_and_custom_signals(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    app = make_app(signals=["*", custom], signals_exclude=["template_rendered", "appcontext_popped"])

    @app.post("/register")
    def register() -> str:
        results = custom.send(app, user="ada")
        assert [receiver for receiver, _ in results] == [on_registered]  # unchanged for the caller
        return render_template_string("ok")

    flask.request_started.connect(on_started, app)
    flask.template_rendered.connect(on_template, app)
    flask.appcontext_popped.connect(on_started, app)
    custom.connect(on_registered)
    try:
        assert app.test_client().post("/register").get_data() == b"ok"
    finally:
        flask.request_started.disconnect(on_started)
        flask.template_rendered.disconnect(on_template)
        flask.appcontext_popped.disconnect(on_started)
        custom.disconnect(on_registered)
    trace = spans()
    started = trace.one("event:request_started")
    assert started["parent_span_id"] == trace.one("http:POST /register")["span_id"]
    registered = trace.one("event:user-registered")
    assert registered["parent_span_id"] == trace.one("web:register")["span_id"]
    assert registered["attributes"]["event.receiver"] == f"{__name__}.on_registered"
    assert "event:template_rendered" not in trace.names()
    assert "event:appcontext_popped" not in trace.names()


def on_started(sender: Flask, **extra: Any) -> None:
    pass


def on_registered(sender: Any, user: str, **extra: Any) -> str:
    return f"welcome {user}"


def test_failing_receiver_marks_its_span_and_still_raises(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    app = make_app(signals=[custom])

    @app.get("/")
    def index() -> str:
        custom.send(app)
        return "unreachable"

    def bad(sender: Any, **extra: Any) -> None:
        raise PermissionError("receiver failed")

    custom.connect(bad)
    try:
        assert app.test_client().get("/").status_code == 500
    finally:
        custom.disconnect(bad)
    event = spans().one("event:user-registered")
    assert event["status"] == "error"
    assert event["status_message"] == "PermissionError: receiver failed"


def test_signals_of_untraced_apps_are_not_traced(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    make_app()  # installs the template_rendered tracing
    plain = Flask("plain")

    @plain.get("/")
    def index() -> str:
        return render_template_string("x")

    flask.template_rendered.connect(on_template)
    try:
        assert plain.test_client().get("/").get_data() == b"x"
    finally:
        flask.template_rendered.disconnect(on_template)
    assert spans().names() == []


def test_async_receiver(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    pytest.importorskip("asgiref")
    app = make_app()

    @app.get("/")
    def index() -> str:
        return render_template_string("x")

    async def on_render(sender: Flask, **extra: Any) -> None:
        pass

    flask.template_rendered.connect(on_render, app)
    try:
        assert app.test_client().get("/").get_data() == b"x"
    finally:
        flask.template_rendered.disconnect(on_render)
    trace = spans()
    assert trace.one("event:template_rendered")["parent_span_id"] == trace.one("web:index")["span_id"]
