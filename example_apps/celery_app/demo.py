"""Demo step: a real Celery worker (prefork, 2 processes) on the Redis broker; tasks sent
from this process inside one ``web:`` span, so the demo output shows one tree from the
sender into the worker — a plain task with its service:/method: calls, a task retried
twice, and a failing one."""

from __future__ import annotations

import os
import sys
import time
import uuid
from typing import Any


def run(ctx: Any) -> None:
    queue = f"shop-demo-{uuid.uuid4().hex[:6]}"
    ctx.env["CELERY_APP_QUEUE"] = queue
    os.environ["CELERY_APP_QUEUE"] = queue
    ctx.start([sys.executable, "-m", "celery", "--quiet", "-A", "example_apps.celery_app.tasks", "worker",
               "-P", "prefork", "-c", "2", "-Q", queue, "--without-mingle", "--without-gossip",
               "--without-heartbeat", "-l", "warning"], env={"INFRATRACE_SERVICE": "shop_tasks"})  # fmt: skip

    import infratrace

    os.environ["INFRATRACE_SERVICE"] = "demo-web"  # this process is the "web app" sending the tasks
    infratrace.configure(ctx.config_path)
    from example_apps.celery_app.tasks import charge_card, notify_customer, process_order

    with infratrace.begin("web:demo.checkout", {"kind": "web", "target": "demo.checkout"}):
        results = [
            process_order.apply_async((1001, "book", 2), queue=queue),
            notify_customer.apply_async((1001,), queue=queue),
            charge_card.apply_async((1001, 25.0), queue=queue),
        ]
    deadline = time.monotonic() + 60
    for result in results:
        result.get(timeout=max(1.0, deadline - time.monotonic()), propagate=False)
    ctx.log(f"celery_app: {[r.state for r in results]} — stopping the worker (its spans flush on shutdown)")
    infratrace.force_flush(10)
