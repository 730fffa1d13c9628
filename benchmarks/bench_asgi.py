"""Microseconds per request added by the ASGI adapter: infratrace vs OpenTelemetry.

    .venv/bin/python benchmarks/bench_asgi.py [--requests 300] [--rounds 61] [--driver file|discard]

One Starlette app (a parametrised JSON route, ``GET /users/{user_id:int}``) is built
four times and called in this process as an ASGI callable — no server, no network:

- ``bare``: the app alone;
- ``otel``: OpenTelemetry's default set-up, ``StarletteInstrumentor.instrument_app``
  (opentelemetry-instrumentation-starlette / -asgi) with an SDK ``TracerProvider`` +
  ``BatchSpanProcessor`` + an exporter that discards — 3 spans per request (the
  server span + 2 ``http send`` spans);
- ``otel lean``: OpenTelemetry's leanest set-up: the same middleware
  (``OpenTelemetryMiddleware``, added as ``instrument_app`` adds it, with the
  Starlette instrumentation's route-named spans) with ``exclude_spans=["receive",
  "send"]`` — 1 span per request, the same provider;
- ``infratrace``: ``app.add_middleware(TraceMiddleware)`` with the ``file`` driver
  writing JSON lines to a temp file — 2 spans per request (``http:`` + ``web:``).

Rounds interleave the four apps (so drift in machine load hits all of them), and each
round ends with the tracer's flush inside the timed region: the background work
(export, JSON encoding, file writes) is paid for in the figure. Queues are sized so
nothing is dropped or sampled out. Reported: the median over rounds of µs/request,
as wall-clock time and as the process's CPU time (all threads; steadier on a shared
machine), the added cost = scenario − bare, and infratrace's added cost as a ratio to
each OpenTelemetry set-up's, also computed round by round (paired).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from _baseline import Scenario, otel_provider, paired_ratio  # benchmarks/ is on sys.path when run as a script
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/users/42",
    "raw_path": b"/users/42",
    "query_string": b"",
    "root_path": "",
    "headers": [
        (b"host", b"127.0.0.1:8000"),
        (b"user-agent", b"bench/1.0"),
        (b"accept", b"*/*"),
        (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
}
REQUEST = {"type": "http.request", "body": b"", "more_body": False}


async def user(request: Request) -> Response:
    return JSONResponse({"id": request.path_params["user_id"], "name": "alice"})


def build_app() -> Starlette:
    return Starlette(routes=[Route("/users/{user_id:int}", user)])


async def receive() -> dict[str, Any]:
    return REQUEST


async def send(message: Any) -> None:
    pass


async def drive(app: ASGIApp, n: int) -> None:
    for _ in range(n):
        await app(dict(SCOPE), receive, send)


def bare() -> Scenario:
    return Scenario("bare starlette", build_app(), lambda: None, 0)


def otel() -> Scenario:
    """OpenTelemetry's default: ``instrument_app``, 3 spans per request."""
    from opentelemetry.instrumentation.starlette import StarletteInstrumentor

    provider, exporter = otel_provider()
    app = build_app()
    StarletteInstrumentor.instrument_app(app, tracer_provider=provider)
    scenario = Scenario("+ opentelemetry (sdk, batch, discard)", app, lambda: provider.force_flush(), 3)
    scenario.exported = lambda: exporter.count
    return scenario


def otel_lean() -> Scenario:
    """OpenTelemetry's leanest: the middleware ``instrument_app`` adds, without the
    ``http receive``/``http send`` spans (``instrument_app`` has no such option), 1 span
    per request named from the route as ``instrument_app`` names it."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.instrumentation.starlette import _get_default_span_details

    provider, exporter = otel_provider()
    app = build_app()
    app.add_middleware(
        OpenTelemetryMiddleware,
        default_span_details=_get_default_span_details,
        tracer_provider=provider,
        exclude_spans=["receive", "send"],
    )
    scenario = Scenario("+ opentelemetry lean (exclude_spans receive, send)", app, lambda: provider.force_flush(), 1)
    scenario.exported = lambda: exporter.count
    return scenario


def infratrace_scenario(directory: Path, driver: str) -> Scenario:
    from infratrace_asgi import TraceMiddleware

    import infratrace

    config = '[trace]\ndriver = "discard"\nbuffer = 1048576\n'
    if driver == "file":
        path = directory / "spans.jsonl"
        config = f'[trace]\ndriver = "file"\njson = true\nbuffer = 1048576\n[trace.setting]\noutput = "{path}"\n'
    infratrace.configure(config)
    app = build_app()
    app.add_middleware(TraceMiddleware)
    label = "file driver, json" if driver == "file" else "discard driver"
    scenario = Scenario(f"+ infratrace ({label})", app, lambda: infratrace.force_flush(60), 2)
    scenario.exported = lambda: int(infratrace.stats()["written_count"])
    return scenario


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="requests per scenario per round")
    parser.add_argument("--rounds", type=int, default=61, help="many short rounds: see docs/benchmarks.md")
    parser.add_argument(
        "--driver",
        choices=("file", "discard"),
        default="file",
        help="infratrace's connection: JSON lines to a file (the figure that counts), or discard "
        "(the adapter's own cost, without formatting and writing)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        scenarios = [bare(), otel(), otel_lean(), infratrace_scenario(Path(tmp), args.driver)]
        loop = asyncio.new_event_loop()

        def run_asgi(app: ASGIApp, n: int) -> None:
            loop.run_until_complete(drive(app, n))

        for scenario in scenarios:  # warm up: build middleware stacks, route tables, caches
            scenario.run(run_asgi, 200)
            scenario.samples.clear()
            scenario.cpu_samples.clear()
        for _ in range(args.rounds):
            for scenario in scenarios:
                scenario.run(run_asgi, args.requests)
        loop.close()
        import infratrace

        print(f"python {sys.version.split()[0]}, {args.rounds} rounds x {args.requests} requests, medians over rounds\n")
        print(
            "| scenario | spans/request | µs/request (wall / cpu) | added µs (wall / cpu) "
            "| added / OTel default added (wall / cpu) | added / OTel lean added (wall / cpu) |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        wall = [statistics.median(scenario.samples) for scenario in scenarios]
        cpu = [statistics.median(scenario.cpu_samples) for scenario in scenarios]
        for index, scenario in enumerate(scenarios):
            cells = [scenario.name, str(scenario.spans_per_request), f"{wall[index]:.1f} / {cpu[index]:.1f}", "", "", ""]
            if index:
                added_wall, added_cpu = wall[index] - wall[0], cpu[index] - cpu[0]
                cells[3] = f"{added_wall:.1f} / {added_cpu:.1f}"
                for column, otel_index in ((4, 1), (5, 2)):
                    otel_wall, otel_cpu = wall[otel_index] - wall[0], cpu[otel_index] - cpu[0]
                    cells[column] = f"{added_wall / otel_wall:.3f} / {added_cpu / otel_cpu:.3f}"
            print("| " + " | ".join(cells) + " |")
        bare_s, otel_s, lean_s, traced_s = scenarios
        print()
        for label, baseline in (("default", otel_s), ("lean", lean_s)):
            print(
                f"paired per-round ratio, infratrace added / OTel {label} added: "
                f"cpu {paired_ratio(bare_s.cpu_samples, baseline.cpu_samples, traced_s.cpu_samples)}; "
                f"wall {paired_ratio(bare_s.samples, baseline.samples, traced_s.samples)}"
            )
        stats = infratrace.stats()
        print(
            f"\ninfratrace: {stats['written_count']} spans written, {stats['dropped_count']} dropped, "
            f"{stats['sampled_out_count']} sampled out, {stats['sync_fallback_count']} sync fallbacks"
        )
        print(f"opentelemetry: {otel_s.exported()} spans exported (default), {lean_s.exported()} (lean)")
        infratrace.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
