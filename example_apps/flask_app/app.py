"""A small shop API traced by the Flask extension — run it with

    gunicorn example_apps.flask_app.app:app -b 127.0.0.1:8000

Tracing is configured from $INFRATRACE_CONFIG (the demo points it at
example_apps/infratrace.toml). Routes: a parametrised one that calls a ``service:``
function which calls a ``method:`` function, a streamed response, one that raises,
one that sends a signal, and an excluded health check."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from blinker import Namespace
from flask import Flask, Response, render_template_string, stream_with_context
from infratrace_flask import InfraTrace

import infratrace

signals = Namespace()
order_placed = signals.signal("order-placed")


@infratrace.method("user.fingerprint")
def fingerprint(user_id: int) -> str:
    return hashlib.sha256(str(user_id).encode()).hexdigest()[:12]


@infratrace.service("user.profile")
def load_profile(user_id: int) -> dict[str, Any]:
    return {"id": user_id, "name": f"user{user_id}", "fingerprint": fingerprint(user_id)}


def create_app(**options: Any) -> Flask:
    app = Flask(__name__)
    app.config.setdefault(
        "INFRATRACE_FLASK",
        {
            "excluded_paths": [r"^/health$"],
            "signals": ["template_rendered", "got_request_exception", "example_apps.flask_app.app:order_placed"],
            "request_headers": ["user-agent", "authorization"],
            "response_traceparent": True,
            "service": "shop",
        },
    )
    InfraTrace(app, **options)

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.get("/users/<int:user_id>")
    def show_user(user_id: int) -> dict[str, Any]:
        return load_profile(user_id)

    @app.get("/stream")
    def stream() -> Response:
        @stream_with_context
        def lines() -> Iterator[str]:
            for index in range(3):
                with infratrace.begin("method:stream.chunk", {"index": index}):
                    yield f"chunk {index}\n"

        return Response(lines(), mimetype="text/plain")

    @app.get("/fail")
    def fail() -> str:
        raise RuntimeError("the payment backend is down")

    @app.post("/orders/<order_id>")
    def place_order(order_id: str) -> str:
        order_placed.send(app, order_id=order_id)
        return render_template_string("order {{ order_id }} placed\n", order_id=order_id)

    @app.post("/checkout/<int:order_id>")
    def checkout(order_id: int) -> tuple[dict[str, str], int]:
        """Sends the order to the Celery worker; the task's trace continues this request."""
        from example_apps.celery_app.tasks import process_order

        result = process_order.delay(order_id, "book", 1)
        return {"task_id": result.id}, 202

    @order_placed.connect_via(app)
    def send_confirmation(sender: Flask, order_id: str, **extra: Any) -> None:
        with infratrace.begin("method:mail.send", {"order_id": order_id}):
            pass

    return app


app = create_app()
