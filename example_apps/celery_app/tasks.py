"""A small shop's background tasks, traced by ``infratrace_celery``.

    celery -A example_apps.celery_app.tasks worker -P prefork -c 2

The web example apps send these tasks (``example_apps.celery_app.tasks.app``); their
request trace continues into the worker: ``queue:`` producer → ``queue:`` consumer →
the ``service:``/``method:`` calls the task makes."""

from __future__ import annotations

import os
from typing import Any

import infratrace_celery
from celery import Celery

import infratrace

BROKER = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/6")

app = Celery("shop_tasks", broker=BROKER, backend=os.environ.get("CELERY_RESULT_BACKEND", BROKER))
app.conf.update(
    task_default_queue=os.environ.get("CELERY_APP_QUEUE", "shop"),
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    result_expires=3600,
    worker_redirect_stdouts=False,  # span lines on the console stay plain
)
infratrace_celery.instrument(app)


@infratrace.method("inventory.reserve")
def reserve_stock(sku: str, quantity: int) -> int:
    stock = {"book": 12, "pen": 40}.get(sku, 0)
    if stock < quantity:
        raise LookupError(f"only {stock} x {sku} in stock")
    return stock - quantity


@infratrace.service("orders.confirm")
def confirm_order(order_id: int, sku: str, quantity: int) -> dict[str, Any]:
    left = reserve_stock(sku, quantity)
    return {"order": order_id, "sku": sku, "left": left}


@app.task(name="shop.process_order")
def process_order(order_id: int, sku: str = "book", quantity: int = 1) -> dict[str, Any]:
    """The task the web apps send: its service:/method: calls are children of it."""
    return confirm_order(order_id, sku, quantity)


@app.task(name="shop.notify_customer", bind=True, max_retries=3)
def notify_customer(self: Any, order_id: int) -> str:
    """The mail gateway times out twice: attempts 1 and 2 retry, attempt 3 succeeds."""
    if self.request.retries < 2:
        raise self.retry(exc=TimeoutError("mail gateway timed out"), countdown=0.1)
    return f"order {order_id}: mail sent on attempt {self.request.retries + 1}"


@app.task(name="shop.charge_card")
def charge_card(order_id: int, amount: float) -> None:
    """Always declined: an error span in the worker."""
    raise PermissionError(f"card declined for order {order_id} ({amount:.2f})")
