"""Demo step: the Flask example app on gunicorn, a few requests through it (one
continuing the client's ``traceparent``, a streamed one, a failing one)."""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path
from typing import Any


def run(ctx: Any) -> None:
    port = ctx.free_port()
    base = f"http://127.0.0.1:{port}"
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    ctx.start(
        [gunicorn, "example_apps.flask_app.app:app", "-b", f"127.0.0.1:{port}", "-w", "2", "--log-level", "warning"],
        env={"INFRATRACE_SERVICE": "shop"},  # the adapter's service option names its spans the same
    )
    ctx.wait_http(f"{base}/health")
    ctx.log(f"flask_app: requests to {base} (gunicorn, 2 workers)")
    for path, headers in (
        ("/users/7", {"traceparent": ctx.traceparent()}),
        ("/stream", {}),
        ("/fail", {}),
        ("/no/such/page", {}),
    ):
        status, body = ctx.request(base + path, headers)
        print(f"GET {path} -> {status} {body[:60]!r}", flush=True)
    request = urllib.request.Request(f"{base}/orders/o-1", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        print(f"POST /orders/o-1 -> {response.status} {response.read()!r}", flush=True)
    ctx.checkout(f"{base}/checkout/701")
