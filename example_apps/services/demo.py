"""Demo step: one trace across two services and a database.

The Starlette shop (uvicorn) asks the Django app's inventory (gunicorn, two workers)
for stock over HTTP with httpx. The trace goes from the shop's ``http:`` span through
its ``client:`` span into the Django request and its ``db:`` query spans; the tenant
travels as baggage; the Django log lines carry the trace and span ids."""

from __future__ import annotations

import sys
from typing import Any


def run(ctx: Any) -> None:
    shop_port, inventory_port = ctx.free_port(), ctx.free_port()
    bin_dir = sys.executable.rsplit("/", 1)[0]
    inventory = f"http://127.0.0.1:{inventory_port}"
    log_file = ctx.output / "inventory.log"
    log_file.unlink(missing_ok=True)  # this run's lines only
    ctx.start(
        [f"{bin_dir}/gunicorn", "--bind", f"127.0.0.1:{inventory_port}", "--workers", "2", "--log-level", "warning",
         "example_apps.django_app.wsgi:application"],
        env={"EXAMPLE_LOG_FILE": str(log_file), "INFRATRACE_SERVICE": "django-shop"},
    )  # fmt: skip
    ctx.start(
        [sys.executable, "-m", "uvicorn", "example_apps.starlette_app.app:app", "--host", "127.0.0.1",
         "--port", str(shop_port), "--log-level", "warning"],
        env={"INVENTORY_URL": inventory, "INFRATRACE_SERVICE": "starlette-shop"},
    )  # fmt: skip
    ctx.wait_http(f"{inventory}/health/")
    ctx.wait_http(f"http://127.0.0.1:{shop_port}/health")
    for sku, tenant in (("book-1", "acme"), ("pen-2", "globex")):
        url = f"http://127.0.0.1:{shop_port}/stock/{sku}"
        status, body = ctx.request(url, {"x-tenant": tenant})
        ctx.log(f"GET {url} (tenant {tenant}) -> {status} {body.decode(errors='replace')}")
    ctx.log(f"the inventory's log lines ({log_file.relative_to(ctx.root)}), each with its trace and span ids:")
    ctx.stop_all()  # the servers flush their spans and close the log file
    print(log_file.read_text(), end="", flush=True)
