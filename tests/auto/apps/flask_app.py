"""A plain Flask app: no infratrace import. ``/task/<n>`` sends a Celery task."""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.get("/health")
def health() -> str:
    return "ok"


@app.get("/hello/<name>")
def hello(name: str) -> str:
    return f"hello {name}"


@app.get("/task/<int:n>")
def task(n: int) -> str:
    from celery_app import QUEUE, double

    double.apply_async((n,), queue=QUEUE)
    return "sent"
