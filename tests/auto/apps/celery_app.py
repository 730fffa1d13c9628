"""A plain Celery app on Redis: no infratrace import. Its queue is ``$AUTO_QUEUE``."""

from __future__ import annotations

import os

from celery import Celery

QUEUE = os.environ.get("AUTO_QUEUE", "auto")

app = Celery("auto", broker="redis://127.0.0.1:6379/6")
app.conf.task_ignore_result = True
app.conf.worker_hijack_root_logger = False


@app.task(name="auto.double")
def double(n: int) -> int:
    return n * 2
