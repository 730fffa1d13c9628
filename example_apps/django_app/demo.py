"""Demo step: the Django shop under gunicorn (WSGI) and uvicorn (ASGI) on 127.0.0.1."""

from __future__ import annotations

import sys
from typing import Any


def run(ctx: Any) -> None:
    wsgi_port, asgi_port = ctx.free_port(), ctx.free_port()
    bin_dir = sys.executable.rsplit("/", 1)[0]
    ctx.start(
        [
            f"{bin_dir}/gunicorn",
            "--bind",
            f"127.0.0.1:{wsgi_port}",
            "--workers",
            "1",
            "--log-level",
            "warning",
            "example_apps.django_app.wsgi:application",
        ],
        env={"INFRATRACE_SERVICE": "django-shop"},  # as INFRATRACE_DJANGO["service"] names its spans
    )
    ctx.start(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--port",
            str(asgi_port),
            "--log-level",
            "warning",
            "example_apps.django_app.asgi:application",
        ],
        env={"INFRATRACE_SERVICE": "django-shop"},
    )
    for port in (wsgi_port, asgi_port):
        ctx.wait_http(f"http://127.0.0.1:{port}/health/")
    wsgi, asgi = f"http://127.0.0.1:{wsgi_port}", f"http://127.0.0.1:{asgi_port}"
    for url, headers in [
        (f"{wsgi}/users/7/", {"traceparent": ctx.traceparent(), "x-request-id": "demo-1"}),
        (f"{wsgi}/orders/42/", {}),
        (f"{wsgi}/report/", {}),
        (f"{wsgi}/fail/", {}),
        (f"{wsgi}/nowhere/", {}),
        (f"{asgi}/async/", {}),
        (f"{asgi}/ticker/", {}),
        (f"{asgi}/orders/43/", {}),
    ]:
        status, body = ctx.request(url, headers)
        ctx.log(f"GET {url} -> {status} {body[:60]!r}")
    ctx.checkout(f"{wsgi}/checkout/601/")
    ctx.checkout(f"{asgi}/checkout/602/")
