"""Microseconds per request added by the Flask extension: infratrace vs OpenTelemetry.

    .venv/bin/python benchmarks/bench_flask.py [--requests 300] [--rounds 61]

One Flask app (a parametrised JSON route, ``GET /users/<int:user_id>``, with an
incoming ``traceparent``) is built three times and called in this process as a WSGI
callable — no server, no network; the body is iterated and closed as a server does:

- ``bare``: the app alone;
- ``otel``: ``FlaskInstrumentor.instrument_app`` (opentelemetry-instrumentation-flask)
  with an SDK ``TracerProvider`` + ``BatchSpanProcessor`` + an exporter that
  discards — 1 span per request;
- ``infratrace``: ``InfraTrace(app)`` with the ``file`` driver writing JSON lines to a
  temp file — 2 spans per request (``http:`` + ``web:``).

Rounds interleave the three apps (so drift in machine load hits all of them), and each
round ends with the tracer's flush inside the timed region: the background work
(export, JSON encoding, file writes) is paid for in the figure. Queues are sized so
nothing is dropped or sampled out. Reported: the median over rounds of µs/request —
wall time, and the process's CPU time over all threads (steadier on a shared machine)
— and the added cost = scenario − bare. ``--driver discard`` measures the adapter and
the pipeline without formatting and writing.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from _baseline import Scenario, otel_provider, paired_ratio  # benchmarks/ is on sys.path when run as a script
from flask import Flask
from werkzeug.test import EnvironBuilder

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]
ENVIRON: dict[str, Any] = EnvironBuilder(
    path="/users/42",
    base_url="http://127.0.0.1:8000",
    headers={
        "User-Agent": "bench/1.0",
        "Accept": "*/*",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    },
    environ_base={"REMOTE_ADDR": "127.0.0.1"},
).get_environ()


def build_app() -> Flask:
    app = Flask("bench")

    @app.get("/users/<int:user_id>")
    def user(user_id: int) -> dict[str, Any]:
        return {"id": user_id, "name": "alice"}

    return app


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], Any]:
    return _write


def _write(data: bytes) -> None:
    pass


def drive(app: WSGIApp, n: int) -> None:
    for _ in range(n):
        environ = dict(ENVIRON)
        environ["wsgi.input"] = io.BytesIO(b"")
        body = app(environ, start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()


def bare() -> Scenario:
    return Scenario("bare flask", build_app(), lambda: None, 0)


def otel() -> Scenario:
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    provider, exporter = otel_provider()
    app = build_app()
    FlaskInstrumentor.instrument_app(app, tracer_provider=provider)
    scenario = Scenario("+ opentelemetry (sdk, batch, discard)", app, lambda: provider.force_flush(), 1)
    scenario.exported = lambda: exporter.count
    return scenario


def infratrace_scenario(directory: Path, driver: str) -> Scenario:
    from infratrace_flask import InfraTrace

    import infratrace

    path = directory / "spans.jsonl"
    setting = f'[trace.setting]\noutput = "{path}"\n' if driver == "file" else ""
    app = build_app()
    app.config["INFRATRACE"] = f'[trace]\ndriver = "{driver}"\njson = true\nbuffer = 1048576\n{setting}'
    InfraTrace(app)
    label = "file driver, json" if driver == "file" else f"{driver} driver"
    scenario = Scenario(f"+ infratrace ({label})", app, lambda: infratrace.force_flush(60), 2)
    scenario.exported = lambda: int(infratrace.stats()["written_count"])
    return scenario


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="requests per scenario per round")
    parser.add_argument("--rounds", type=int, default=61, help="many short rounds: see docs/benchmarks.md")
    parser.add_argument("--driver", choices=("file", "discard"), default="file", help="infratrace's driver")
    args = parser.parse_args(argv)
    import infratrace

    with tempfile.TemporaryDirectory() as tmp:
        scenarios = [bare(), otel(), infratrace_scenario(Path(tmp), args.driver)]
        for scenario in scenarios:  # warm up: first-request setup, view wrapping, caches
            scenario.run(drive, 200)
            scenario.samples.clear()
            scenario.cpu_samples.clear()
        for _ in range(args.rounds):
            for scenario in scenarios:
                scenario.run(drive, args.requests)
        wall = [statistics.median(scenario.samples) for scenario in scenarios]
        cpu = [statistics.median(scenario.cpu_samples) for scenario in scenarios]

        print(
            f"python {sys.version.split()[0]}, flask {_version('flask')}, "
            f"{args.rounds} rounds x {args.requests} requests, median µs/request\n"
        )
        print("| scenario | spans/request | µs/request (wall / cpu) | added µs (wall / cpu) | added / OTel added (wall / cpu) |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for index, scenario in enumerate(scenarios):
            cells = [scenario.name, str(scenario.spans_per_request), f"{wall[index]:.1f} / {cpu[index]:.1f}", "", ""]
            if index:
                added_wall, added_cpu = wall[index] - wall[0], cpu[index] - cpu[0]
                cells[3] = f"{added_wall:.1f} / {added_cpu:.1f}"
                cells[4] = f"{added_wall / (wall[1] - wall[0]):.3f} / {added_cpu / (cpu[1] - cpu[0]):.3f}"
            print("| " + " | ".join(cells) + " |")
        bare_s, otel_s, traced_s = scenarios
        print(
            "\npaired per-round ratio, infratrace added / OTel added: "
            f"cpu {paired_ratio(bare_s.cpu_samples, otel_s.cpu_samples, traced_s.cpu_samples)}; "
            f"wall {paired_ratio(bare_s.samples, otel_s.samples, traced_s.samples)}"
        )
        stats = infratrace.stats()
        print(
            f"\ninfratrace: {stats['written_count']} spans written, {stats['dropped_count']} dropped, "
            f"{stats['sampled_out_count']} sampled out, {stats['sync_fallback_count']} sync fallbacks"
        )
        print(f"opentelemetry: {scenarios[1].exported()} spans exported")
        infratrace.shutdown()
    return 0


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    sys.exit(main())
