"""Real servers under load: what tracing costs an app served by gunicorn or uvicorn and
driven by ``wrk`` on 127.0.0.1, bare vs infratrace vs OpenTelemetry; and what it costs a
Celery prefork worker on Redis.

    .venv/bin/python benchmarks/load.py [--rounds 5] [--duration 5] [--servers all]
        [--variants all] [--strace] [--celery-tasks 10000] [--no-celery]

Servers (``--servers``, comma-separated; default all):

- ``flask-gunicorn``: the Flask app on ``gunicorn -k sync -w 1``;
- ``flask-gunicorn-2``: the same with ``-w 2``;
- ``flask-gunicorn-2-preload``: the same with ``--preload`` (the app and infratrace loaded
  in the master, the workers forked from it);
- ``starlette-uvicorn``: the Starlette app on ``uvicorn`` (one process);
- ``django-gunicorn``: the Django app (WSGI) on ``gunicorn -k sync -w 1``;
- ``django-uvicorn``: the Django app (ASGI) on ``uvicorn``.

Variants (``--variants``; see ``load_apps.py``): ``bare``; ``infratrace`` (the
adapter, the file driver writing JSON lines); ``infratrace-otlp`` (the same plus an
otlp connection to a local receiver in this process); ``otel`` (OpenTelemetry's
instrumentation, ``BatchSpanProcessor`` with an exporter that discards); ``otel-lean``
(ASGI servers only: ``exclude_spans=["receive", "send"]``). On request only, to show
where the cost goes: ``infratrace-nosink`` (spans begun and ended, handed to a sink
that drops them), ``infratrace-discard`` (the pipeline with the discard driver) and
``wrapper-only`` (Flask and Starlette: a middleware that sees the status and reads the
clock, no tracing).

A round starts each variant's server in turn, in an order rotated every round, waits
for it to answer, warms it up for 1 s with ``wrk``, then runs ``wrk -t1 -c8`` for
``--duration`` seconds on ``GET /hello`` and stops the server (SIGTERM, so infratrace
writes what it holds). Reported per server and variant, as the median over rounds of
the ratio to bare *within the round*: requests/s, p50, p99 and p99.9 latency; and the
added cost per request (``1/throughput − 1/bare throughput``) as a ratio to
OpenTelemetry's added cost. infratrace's output is checked: the lines written per
request served, and requests served − ``http:`` spans written (0, give or take the few
requests wrk cuts off when it stops). The workers' resident memory is read before each
round: it must level off.

``--strace`` adds, after the timed rounds, one untimed run per infratrace and
OpenTelemetry variant under ``strace -f -c -e trace=futex`` attached to the worker
processes: futex calls per request (strace slows the process; only the count is
read).

The Celery part: 10,000 (``--celery-tasks``) ``load.add`` tasks published to Redis
(untraced), then a prefork worker (``-c 1``) started; tasks/s from the worker's first
task to its last, for bare, infratrace (file driver) and OpenTelemetry, ``--rounds``
rounds rotated.

``wrk`` and the servers share this machine's cores; on a 2-core machine the figures are
those of a server with one core of its own at most.
"""

from __future__ import annotations

import argparse
import http.server
import itertools
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHON = sys.executable
BIN = Path(sys.executable).parent

SERVERS: dict[str, tuple[str, list[str]]] = {
    # name: (app attribute of load_apps, command before the app)
    "flask-gunicorn": ("flask_app", ["gunicorn", "-k", "sync", "-w", "1"]),
    "flask-gunicorn-2": ("flask_app", ["gunicorn", "-k", "sync", "-w", "2"]),
    # the app (and infratrace) loaded in the master before the workers fork
    "flask-gunicorn-2-preload": ("flask_app", ["gunicorn", "-k", "sync", "-w", "2", "--preload"]),
    "starlette-uvicorn": ("starlette_app", ["uvicorn"]),
    "django-gunicorn": ("django_wsgi", ["gunicorn", "-k", "sync", "-w", "1"]),
    "django-uvicorn": ("django_asgi", ["uvicorn"]),
}
VARIANTS = ("bare", "infratrace", "infratrace-otlp", "otel", "otel-lean")
EXTRA_VARIANTS = ("infratrace-discard", "infratrace-nosink", "wrapper-only")  # on request only: where the cost goes

WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("LOAD %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- a local OTLP receiver: counts the requests and bytes it is sent -----------------------
class Receiver:
    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                receiver.bytes += len(self.rfile.read(length))
                receiver.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


# -- one server run --------------------------------------------------------------------
@dataclass
class Result:
    requests: int
    seconds: float
    p50: float  # µs
    p99: float
    p999: float
    errors: int
    lines: int = 0
    futex: int = -1
    cpu_us: float = 0.0  # the server's worker processes' CPU time (all threads), µs per request
    switches: float = 0.0  # their context switches per request (voluntary + not)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def write_config(work: Path, variant: str, otlp_port: int) -> Path:
    path = work / "infratrace.toml"
    text = (
        '[infratrace]\nproject = "load"\n'
        f'[trace.file]\ndriver = "file"\njson = true\n[trace.file.setting]\noutput = "{work}/spans.jsonl"\n'
    )
    if variant in ("infratrace-discard", "infratrace-nosink"):
        text = '[trace]\ndriver = "discard"\n'
    if variant == "infratrace-otlp":
        text += f'[trace.otlp]\ndriver = "otlp"\n[trace.otlp.setting]\nendpoint = "http://127.0.0.1:{otlp_port}/v1/traces"\n'
    path.write_text(text)
    return path


def source_path(base_tree: Path | None) -> str:
    """``PYTHONPATH`` for a server: this directory (``load_apps``), then the infratrace
    sources: this tree's, or another checkout's (``--base-tree``: the core and each
    integration, ahead of the installed ones)."""
    trees = [ROOT] if base_tree is None else [base_tree, *sorted((base_tree / "integrations").iterdir())]
    return os.pathsep.join([str(HERE), *map(str, trees)])


def start_server(
    server: str, variant: str, work: Path, otlp_port: int, base_tree: Path | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    attribute, command = SERVERS[server]
    port = free_port()
    base = variant == "infratrace@base"
    env = {
        **os.environ,
        "LOAD_VARIANT": "infratrace" if base else variant,
        "INFRATRACE_CONFIG": str(write_config(work, variant, otlp_port)),
        "PYTHONPATH": source_path(base_tree if base else None),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    argv = [str(BIN / command[0]), *command[1:]]
    if command[0] == "gunicorn":
        argv += ["-b", f"127.0.0.1:{port}", "--log-level", "warning", f"load_apps:{attribute}"]
    else:
        argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
                 f"load_apps:{attribute}"]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{server}/{variant} exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello", timeout=1) as response:
                if response.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{server}/{variant} did not answer within 30 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def worker_pids(proc: subprocess.Popen[bytes], server: str) -> list[int]:
    if SERVERS[server][1][0] != "gunicorn":
        return [proc.pid]
    out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_figures(pids: Sequence[int]) -> tuple[float, int]:
    """CPU seconds (user + system, all threads) and context switches of ``pids``."""
    cpu = 0.0
    switches = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            for task in Path(f"/proc/{pid}/task").iterdir():
                for line in (task / "status").read_text().splitlines():
                    if line.endswith("ctxt_switches:") is False and "ctxt_switches" in line:
                        switches += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return cpu, switches


def wrk(port: int, seconds: float, script: Path) -> Result:
    out = subprocess.run(
        ["wrk", "-t1", "-c8", f"-d{seconds:g}s", "-s", str(script), f"http://127.0.0.1:{port}/hello"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    match = re.search(r"^LOAD (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$", out, re.M)
    if match is None:
        raise RuntimeError(f"wrk printed no result: {out}")
    requests, duration, p50, p99, p999, errors = (int(g) for g in match.groups())
    return Result(requests, duration / 1e6, p50, p99, p999, errors)


@dataclass
class Running:
    """One variant's server, started for the whole of a server's measurement."""

    variant: str
    proc: subprocess.Popen[bytes]
    port: int
    work: Path
    pids: list[int]
    requests: int = 0
    rss: list[float] = field(default_factory=list)  # MB, before each measured slice


def start_variant(server: str, variant: str, root: Path, receiver: Receiver, base_tree: Path | None) -> Running:
    work = root / variant
    work.mkdir()
    proc, port = start_server(server, variant, work, receiver.port, base_tree)
    return Running(variant, proc, port, work, worker_pids(proc, server))


def resident_mb(pids: Sequence[int]) -> float:
    """The worker processes' resident memory, in MB."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1024


def measure(run: Running, duration: float, script: Path) -> Result:
    run.rss.append(resident_mb(run.pids))
    cpu0, sw0 = process_figures(run.pids)
    result = wrk(run.port, duration, script)
    cpu1, sw1 = process_figures(run.pids)
    result.cpu_us = (cpu1 - cpu0) * 1e6 / max(1, result.requests)
    result.switches = (sw1 - sw0) / max(1, result.requests)
    run.requests += result.requests
    return result


def futex_per_request(run: Running, duration: float, script: Path) -> float:
    """Futex calls per request, from ``strace -c`` attached to the worker processes
    during one more (untimed) wrk run."""
    tracer = subprocess.Popen(
        ["strace", "-f", "-c", "-e", "trace=futex", *itertools.chain(*(("-p", str(p)) for p in run.pids))],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    time.sleep(0.5)
    result = wrk(run.port, duration, script)
    run.requests += result.requests
    tracer.send_signal(signal.SIGINT)
    _, err = tracer.communicate(timeout=30)
    match = re.search(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?futex$", err, re.M)
    return (int(match.group(1)) if match else 0) / max(1, result.requests)


def lines_written(run: Running) -> tuple[int, int]:
    """Lines in the trace file, and of those the ``http:`` spans (one per request)."""
    spans = run.work / "spans.jsonl"
    if not spans.exists():
        return 0, 0
    lines = http = 0
    with spans.open("rb") as f:
        for line in f:
            lines += 1
            http += b'"name":"http:' in line
    return lines, http


# -- the web part ------------------------------------------------------------------------
@dataclass
class Cell:
    rps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    p999: list[float] = field(default_factory=list)
    added_us: list[float] = field(default_factory=list)
    vs_otel: list[float] = field(default_factory=list)
    cpu_added: list[float] = field(default_factory=list)
    raw: list[Result] = field(default_factory=list)
    lines_per_request: float = float("nan")
    http_missing: int = 0  # requests served − http: spans written (wrk does not count what it cuts off at the end)
    rss: list[float] = field(default_factory=list)
    futex: float = float("nan")


def variants_for(server: str, wanted: Sequence[str]) -> list[str]:
    asgi = server.endswith("uvicorn")
    wrapper = server.startswith(("flask", "starlette"))
    return [v for v in wanted if (v != "otel-lean" or asgi) and (v != "wrapper-only" or wrapper)]


def web(args: argparse.Namespace, script: Path, receiver: Receiver) -> None:
    servers = list(SERVERS) if args.servers == "all" else args.servers.split(",")
    wanted = list(VARIANTS) if args.variants == "all" else ["bare", *[v for v in args.variants.split(",") if v != "bare"]]
    if args.base_tree and "infratrace@base" not in wanted:
        wanted.append("infratrace@base")
    for server in servers:
        variants = variants_for(server, wanted)
        cells = {v: Cell() for v in variants}
        with tempfile.TemporaryDirectory(prefix="infratrace-load-") as tmp:
            running: dict[str, Running] = {}
            try:
                # Every variant's server runs from start to end; the measurements are
                # interleaved, so a change in the machine's speed hits all of them.
                for v in variants:
                    running[v] = start_variant(server, v, Path(tmp), receiver, args.base_tree)
                for run in running.values():
                    run.requests += wrk(run.port, 1, script).requests  # warm-up
                for round_no in range(args.rounds):
                    shift = round_no % len(variants)
                    order = variants[shift:] + variants[:shift]
                    results = {v: measure(running[v], args.duration, script) for v in order}
                    record_round(cells, results)
                    print(f"  {server} round {round_no + 1}: " + ", ".join(
                        f"{v} {r.rps:.0f}/s p99 {r.p99 / 1000:.2f}ms" for v, r in results.items()), flush=True)  # fmt: skip
                if args.strace and shutil.which("strace"):
                    for v in variants:
                        if v != "bare":
                            cells[v].futex = futex_per_request(running[v], args.duration, script)
            finally:
                for run in running.values():
                    stop_server(run.proc)
            for v, run in running.items():
                if v.startswith("infratrace") and v not in EXTRA_VARIANTS:
                    lines, http = lines_written(run)
                    served = run.requests + 1  # + the start-up probe
                    cells[v].lines_per_request = lines / max(1, served)
                    cells[v].http_missing = served - http
                cells[v].rss = run.rss
        report(server, variants, cells)


def record_round(cells: dict[str, Cell], results: dict[str, Result]) -> None:
    bare = results["bare"]
    otel_added = 1e6 / results["otel"].rps - 1e6 / bare.rps if "otel" in results else float("nan")
    for v, r in results.items():
        cell = cells[v]
        cell.raw.append(r)
        cell.rps.append(r.rps / bare.rps)
        cell.p50.append(r.p50 / bare.p50)
        cell.p99.append(r.p99 / bare.p99)
        cell.p999.append(r.p999 / bare.p999)
        added = 1e6 / r.rps - 1e6 / bare.rps
        cell.added_us.append(added)
        cell.cpu_added.append(r.cpu_us - bare.cpu_us)
        cell.vs_otel.append(added / otel_added if otel_added > 0 else float("nan"))


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(server: str, variants: Sequence[str], cells: dict[str, Cell]) -> None:
    bare = cells["bare"]
    print(f"\n### {server}\n")
    print(f"bare: {med([r.rps for r in bare.raw]):.0f} req/s, p50 {med([r.p50 for r in bare.raw]) / 1000:.2f} ms, "
          f"p99 {med([r.p99 for r in bare.raw]) / 1000:.2f} ms, p99.9 {med([r.p999 for r in bare.raw]) / 1000:.2f} ms")  # fmt: skip
    print()
    print(
        f"server CPU {med([r.cpu_us for r in bare.raw]):.0f} µs/request, "
        f"{med([r.switches for r in bare.raw]):.2f} context switches/request"
    )
    print()
    print(
        "| variant | req/s ÷ bare | p50 ÷ bare | p99 ÷ bare | p99.9 ÷ bare | added µs/request | added ÷ OTel's added "
        "| server CPU added µs/request | switches/request | lines/request (requests − http: spans) | RSS MB, first → last round "
        "| futex/request | errors |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for v in variants:
        if v == "bare":
            continue
        c = cells[v]
        lines = f"{c.lines_per_request:.2f}" if c.lines_per_request == c.lines_per_request else "—"
        if c.lines_per_request == c.lines_per_request:
            lines += f" ({c.http_missing:+d})"
        rss = f"{c.rss[0]:.0f} → {c.rss[-1]:.0f}" if c.rss else "—"
        fx = f"{c.futex:.3f}" if c.futex == c.futex else "—"
        errors = sum(r.errors for r in c.raw)
        print(f"| {v} | {med(c.rps):.3f} | {med(c.p50):.2f} | {med(c.p99):.2f} | {med(c.p999):.2f} | "
              f"{med(c.added_us):.1f} | {med(c.vs_otel):.3f} | {med(c.cpu_added):.1f} | {med([r.switches for r in c.raw]):.2f} "
              f"| {lines} | {rss} | {fx} | {errors} |")  # fmt: skip
    print(flush=True)


# -- the Celery part ---------------------------------------------------------------------
def celery(args: argparse.Namespace) -> None:
    import redis

    sys.path.insert(0, str(HERE))
    from load_apps import CELERY_BROKER, CELERY_COUNTER, CELERY_QUEUE

    client = redis.Redis.from_url(CELERY_BROKER)
    client.ping()
    variants = ["bare", "infratrace", "otel", "signals"]
    rates: dict[str, list[float]] = {v: [] for v in variants}
    for round_no in range(args.rounds):
        shift = round_no % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            rates[variant].append(celery_run(variant, args.celery_tasks, client, CELERY_QUEUE, CELERY_COUNTER))
        print(f"  celery round {round_no + 1}: " + ", ".join(f"{v} {r[-1]:.0f} tasks/s" for v, r in rates.items()),
              flush=True)  # fmt: skip
    bare = rates["bare"]
    print("\n### celery prefork worker (-c 1), Redis\n")
    print("(signals: no-op receivers on task_prerun/postrun and before/after_task_publish: Celery's own dispatch)\n")
    print(f"bare: {med(bare):.0f} tasks/s\n")
    print("| variant | tasks/s ÷ bare | added µs/task | added ÷ OTel's added |")
    print("| --- | --- | --- | --- |")
    for v in variants[1:]:
        ratio = [r / b for r, b in zip(rates[v], bare, strict=True)]
        added = [1e6 / r - 1e6 / b for r, b in zip(rates[v], bare, strict=True)]
        otel = [1e6 / r - 1e6 / b for r, b in zip(rates["otel"], bare, strict=True)]
        print(f"| {v} | {med(ratio):.3f} | {med(added):.1f} | {med([a / o for a, o in zip(added, otel, strict=True)]):.3f} |")
    print(flush=True)


def celery_run(variant: str, tasks: int, client: object, queue: str, counter: str) -> float:
    import redis

    assert isinstance(client, redis.Redis)
    with tempfile.TemporaryDirectory(prefix="infratrace-load-celery-") as tmp:
        work = Path(tmp)
        env = {
            **os.environ,
            "LOAD_VARIANT": variant,
            "INFRATRACE_CONFIG": str(write_config(work, "infratrace", 0)),
            "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT)]),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        client.delete(queue, counter)
        publish = (
            "import load_apps; app = load_apps.build_celery(); t = app.tasks['load.add']\n"
            f"with app.producer_or_acquire() as p:\n    [t.apply_async((1, 2), producer=p) for _ in range({tasks})]\n"
        )
        subprocess.run([PYTHON, "-c", publish], env={**env, "LOAD_VARIANT": "bare"}, check=True, cwd=work)
        worker = subprocess.Popen(
            [str(BIN / "celery"), "-A", "load_apps:celery_app", "worker", "--pool", "prefork", "-c", "1",
             "-Q", queue, "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
            env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            start = None
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                done = int(client.get(counter) or 0)
                if start is None and done > 0:
                    start, first = time.perf_counter(), done
                if done >= tasks:
                    break
                time.sleep(0.005)
            else:
                raise RuntimeError(f"celery/{variant}: {done}/{tasks} tasks in 600 s")
            assert start is not None
            rate = (tasks - first) / (time.perf_counter() - start)
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        if variant == "infratrace":
            spans = work / "spans.jsonl"
            lines = len(spans.read_bytes().splitlines()) if spans.exists() else 0
            if lines < tasks:
                raise RuntimeError(f"celery/infratrace: {lines} spans written for {tasks} tasks")
        return rate


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--servers", default="all")
    parser.add_argument("--variants", default="all")
    parser.add_argument("--strace", action="store_true")
    parser.add_argument("--celery-tasks", type=int, default=10_000)
    parser.add_argument("--no-celery", action="store_true")
    parser.add_argument("--no-web", action="store_true")
    parser.add_argument("--base-tree", type=Path, help="another checkout of infratrace, served as variant infratrace@base")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None and not args.no_web:
        parser.error("wrk is not installed (Debian: apt-get install wrk)")
    import platform

    print(f"# load: {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{args.rounds} rounds of {args.duration:g} s, wrk -t1 -c8\n", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "report.lua"
        script.write_text(WRK_SCRIPT)
        receiver = Receiver()
        try:
            if not args.no_web:
                web(args, script, receiver)
        finally:
            receiver.close()
        if not args.no_celery:
            celery(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
