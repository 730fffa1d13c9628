"""Demo step: the Starlette example app on uvicorn, a few requests through it."""

from __future__ import annotations

import sys
from typing import Any


def run(ctx: Any) -> None:
    port = ctx.free_port()
    base = f"http://127.0.0.1:{port}"
    ctx.start(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "example_apps.starlette_app.app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env={"INFRATRACE_SERVICE": "starlette-shop"},
    )
    ctx.wait_http(f"{base}/health")
    ctx.log(f"starlette_app: requests to {base}")
    for path, headers in (
        ("/users/1", {"traceparent": ctx.traceparent()}),
        ("/users/99", {}),
        ("/report", {}),
        ("/fail", {}),
        ("/no/such/page", {}),
    ):
        status, body = ctx.request(base + path, headers)
        print(f"GET {path} -> {status} {body[:60]!r}", flush=True)
    ctx.checkout(f"{base}/checkout/501")
