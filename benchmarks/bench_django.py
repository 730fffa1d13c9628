"""Microseconds a Django request costs with infratrace_django vs the bare app vs
``opentelemetry-instrumentation-django`` — in one run, the app called in-process as a
WSGI callable and as an ASGI callable (no network).

    .venv/bin/python benchmarks/bench_django.py [--requests 500] [--rounds 41]

Scenarios (same project, same view: ``GET /users/42/`` → a small JSON response,
resolved from ``users/<int:pk>/``):

- ``bare``: no tracing middleware;
- ``infratrace``: ``infratrace_django.TraceMiddleware`` + signal tracing installed
  (the AppConfig default), the ``file`` driver writing JSON lines to a temp file;
- ``otel``: ``DjangoInstrumentor`` with the SDK's TracerProvider + BatchSpanProcessor
  + an exporter that discards.

Each batch of requests ends with a flush of the tracer, so the background work
(formatting, writing, exporting) is inside the figure. A second table gives CPU time
(``time.thread_time`` of the request thread, ``time.process_time`` of all threads),
less sensitive to other load on a shared machine than the wall clock. Rounds are interleaved; the
reported figure per scenario is the median over rounds. "added" = scenario − bare.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _baseline import DiscardExporter, otel_provider, paired_ratio  # benchmarks/ is on sys.path when run as a script
from opentelemetry.sdk.trace import TracerProvider

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BENCH_URLS = "benchmarks.bench_django"
PATH = "/users/42/"


def user(request: Any, pk: int) -> Any:
    from django.http import JsonResponse

    return JsonResponse({"id": pk, "name": "ada"})


async def auser(request: Any, pk: int) -> Any:
    from django.http import JsonResponse

    return JsonResponse({"id": pk, "name": "ada"})


urlpatterns: list[Any] = []


def setup_django() -> None:
    import django
    from django.conf import settings
    from django.urls import path

    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=BENCH_URLS if __name__ != "__main__" else "__main__",
        INSTALLED_APPS=["infratrace_django"],
        MIDDLEWARE=[],
        DATABASES={},
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup()
    urlpatterns[:] = [path("users/<int:pk>/", user), path("async/users/<int:pk>/", auser)]


def wsgi_environ(path: str) -> dict[str, Any]:
    import io

    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "bench",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


Timing = tuple[float, float, float]  # wall, request thread's CPU, whole process's CPU (s)


def run_wsgi(app: Callable[..., Any], n: int, flush: Callable[[], Any]) -> Timing:
    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        pass

    environ = wsgi_environ(PATH)
    start, thread0, process0 = time.perf_counter(), time.thread_time(), time.process_time()
    for _ in range(n):
        response = app(dict(environ), start_response)
        b"".join(response)
        response.close()
    thread = time.thread_time() - thread0
    flush()
    return time.perf_counter() - start, thread, time.process_time() - process0


def run_asgi(app: Callable[..., Any], n: int, flush: Callable[[], Any]) -> Timing:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/async" + PATH,
        "raw_path": b"/async" + PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    def receiver() -> Callable[[], Any]:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.Event().wait()  # no disconnect: Django cancels this when done
            return {"type": "http.disconnect"}

        return receive

    async def send(message: dict[str, Any]) -> None:
        pass

    async def loop() -> Timing:
        # Sync parts of an ASGI request run in asgiref's worker threads: the "request
        # thread" figure is only the event loop's thread here.
        start, thread0, process0 = time.perf_counter(), time.thread_time(), time.process_time()
        for _ in range(n):
            await app(dict(scope), receiver(), send)
        thread = time.thread_time() - thread0
        flush()
        return time.perf_counter() - start, thread, time.process_time() - process0

    return asyncio.run(loop())


def build(middleware: Sequence[str]) -> tuple[Any, Any]:
    from django.conf import settings
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.wsgi import WSGIHandler

    settings.MIDDLEWARE = list(middleware)
    return WSGIHandler(), ASGIHandler()


# A scenario: its (WSGI, ASGI) handlers, its tracer's flush, what to call before its requests.
DjangoScenario = tuple[tuple[Any, Any], Callable[[], Any], Callable[[], None]]


def build_scenarios(out: Path) -> tuple[dict[str, DjangoScenario], TracerProvider, DiscardExporter]:
    """The three scenarios (after :func:`setup_django`): infratrace configured to write
    JSON lines to ``out``, OpenTelemetry's provider and the exporter that counts its spans."""
    from infratrace_django import django_options
    from infratrace_django.signals import install_signal_tracing, uninstall_signal_tracing

    import infratrace

    infratrace.configure(f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{out}"\n')

    from opentelemetry.instrumentation.django import DjangoInstrumentor

    provider, exporter = otel_provider()

    uninstall_signal_tracing()
    bare = build([])
    traced = build(["infratrace_django.TraceMiddleware"])
    from django.conf import settings

    # The instrumentor inserts its middleware into settings.MIDDLEWARE as it finds it:
    # empty it first, or the otel scenario would run infratrace's middleware too.
    settings.MIDDLEWARE = []
    DjangoInstrumentor().instrument(tracer_provider=provider)
    otel = build(settings.MIDDLEWARE)  # the instrumentor's middleware alone

    def no_flush() -> None:
        pass

    scenarios: dict[str, DjangoScenario] = {
        "bare": (bare, no_flush, uninstall_signal_tracing),
        "infratrace": (traced, infratrace.force_flush, lambda: install_signal_tracing(django_options())),
        "otel": (otel, provider.force_flush, uninstall_signal_tracing),
    }
    return scenarios, provider, exporter


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=41, help="many short rounds: see docs/benchmarks.md")
    args = parser.parse_args(argv)

    setup_django()
    import django

    import infratrace

    tmp = Path(tempfile.mkdtemp(prefix="bench-django-"))
    out = tmp / "spans.jsonl"
    scenarios, provider, _ = build_scenarios(out)
    results: dict[tuple[str, str], list[Timing]] = {}
    n = args.requests
    for mode, runner in (("wsgi", run_wsgi), ("asgi", run_asgi)):
        for handlers, flush, prepare in scenarios.values():  # warm-up
            prepare()
            runner(handlers[0 if mode == "wsgi" else 1], max(200, n // 10), flush)
        for _ in range(args.rounds):
            for name, (handlers, flush, prepare) in scenarios.items():
                prepare()
                gc.collect()
                timing = runner(handlers[0 if mode == "wsgi" else 1], n, flush)
                wall, thread, process = (value / n * 1e6 for value in timing)
                results.setdefault((mode, name), []).append((wall, thread, process))

    lines = sum(1 for _ in out.open()) if out.exists() else 0
    print(f"Django {django.get_version()}, Python {sys.version.split()[0]}, {n} requests x {args.rounds} rounds")
    print(f"infratrace wrote {lines} JSON lines to {out}; stats: dropped={infratrace.stats()['dropped_count']}")
    print()
    print("| mode | scenario | µs/request (median) | added vs bare | added / otel added |")
    print("| --- | --- | ---: | ---: | ---: |")

    def median(mode: str, name: str, index: int) -> float:
        return statistics.median(timing[index] for timing in results[(mode, name)])

    for mode in ("wsgi", "asgi"):
        base = median(mode, "bare", 0)
        otel_added = median(mode, "otel", 0) - base
        for name in scenarios:
            value = median(mode, name, 0)
            added = value - base
            ratio = f"{added / otel_added:.3f}" if name != "bare" and otel_added > 0 else ""
            print(f"| {mode} | {name} | {value:.1f} | {added:+.1f} | {ratio} |")
    print()
    print("CPU time (medians; the request thread, then all threads incl. background formatting/writing):")
    print()
    print("| mode | scenario | request thread µs | added | all threads µs | added | added / otel added |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for mode in ("wsgi", "asgi"):
        thread_base, process_base = median(mode, "bare", 1), median(mode, "bare", 2)
        otel_added = median(mode, "otel", 2) - process_base
        for name in scenarios:
            thread, process = median(mode, name, 1), median(mode, name, 2)
            added = process - process_base
            ratio = f"{added / otel_added:.3f}" if name != "bare" and otel_added > 0 else ""
            print(f"| {mode} | {name} | {thread:.1f} | {thread - thread_base:+.1f} | {process:.1f} | {added:+.1f} | {ratio} |")
    print()
    for mode in ("wsgi", "asgi"):
        bare_t, otel_t, traced_t = (results[(mode, name)] for name in ("bare", "otel", "infratrace"))
        print(
            f"{mode}: paired per-round ratio, infratrace added / OTel added: "
            f"all-threads cpu {paired_ratio(*([t[2] for t in x] for x in (bare_t, otel_t, traced_t)))}; "
            f"wall {paired_ratio(*([t[0] for t in x] for x in (bare_t, otel_t, traced_t)))}"
        )
    infratrace.shutdown()
    provider.shutdown()
    os.environ.pop("DJANGO_SETTINGS_MODULE", None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
