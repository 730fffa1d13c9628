"""Cost added per outgoing HTTP request by ``infratrace_http`` vs OpenTelemetry's
instrumentation of the same library, for httpx (sync and async), requests, urllib3 and
urllib.request, against a local server.

    .venv/bin/python benchmarks/bench_http_clients.py [--only httpx,requests] [--rounds 31] [--per-round 200]
    .venv/bin/python benchmarks/bench_http_clients.py --instructions [--requests 500] [--jobs 2] [--parts]

The server: a minimal HTTP/1.1 server (asyncio, keep-alive, a fixed 2-byte answer) in
its own process, so its work is never counted. The client's requests, the same in
every scenario: ``GET /users/42?page=1`` through one kept client — ``httpx.Client``,
``httpx.AsyncClient`` (one event-loop run per chunk of requests), ``requests.Session``,
``urllib3.PoolManager`` — or ``urllib.request.urlopen`` (a new connection each time,
as urllib does), the body read. Chunks of 100 requests, each inside a parent span
(the web request an outgoing call belongs to) and followed by the tracer's flush, so
the background work (export, JSON encoding, file writes) is inside the figure.
Scenarios:

- ``bare``: the library alone;
- ``otel``: the library's OpenTelemetry instrumentor (``HTTPXClientInstrumentor``,
  ``RequestsInstrumentor``, ``URLLib3Instrumentor``, ``URLLibInstrumentor``; their
  default semantic conventions, no meter provider) with the SDK's ``TracerProvider``
  + ``BatchSpanProcessor`` + an exporter that discards (benchmarks/_baseline.py),
  the parents made by the SDK's tracer;
- ``infratrace``: ``infratrace_http.<library>.instrument()`` with the ``file`` driver
  writing JSON lines, the parents made by ``infratrace.begin``.

Both write or export one span per request (+ one parent per chunk); each run checks
that none was lost. "added" = scenario − bare; the figure judged is added(infratrace)
/ added(otel), the target ≤ 0.10.

Two measures:

- **time** (default): one process per library, rounds interleaving the three
  scenarios (the instrumentations switched on and off between them, outside the timed
  part), process CPU time over all threads and wall time per request; medians over
  rounds, and the per-round (paired) ratio;
- **instructions** (``--instructions``): each scenario in a child process under
  valgrind's callgrind, run twice — warm-up only, then warm-up + N requests — and
  (second − first) / N, over all threads (the method and limits of
  bench_instructions.py). Deterministic to ~1 %; what it cannot see (the kernel's side
  of the socket calls, cache misses) is the same in all three scenarios, except for the
  tracers' own file writes and thread hand-offs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _report import git_head, package_version  # benchmarks/ is on sys.path when run as a script

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LIBRARIES = ("httpx", "httpx-async", "requests", "urllib3", "urllib")
SCENARIOS = ("bare", "otel", "infratrace")
# --parts: infratrace's cost cut in three (instructions mode): the wrapper alone (the
# host excluded: no span, nothing injected), + the span (propagate=False), + the header.
PARTS = ("infratrace excluded", "infratrace no header")
INSTRUMENT_OPTIONS: dict[str, dict[str, Any]] = {
    "infratrace": {},
    "infratrace excluded": {"excluded_hosts": ["127.0.0.1"]},
    "infratrace no header": {"propagate": False},
}
CHUNK = 100
PATH = "/users/42?page=1"
WARMUP = 100
VERSIONS = (
    "httpx",
    "httpcore",
    "requests",
    "urllib3",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-httpx",
    "opentelemetry-instrumentation-requests",
    "opentelemetry-instrumentation-urllib3",
    "opentelemetry-instrumentation-urllib",
)

# -- the server (its own process) ---------------------------------------------------------------

_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
_ANSWER_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


async def _connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            close = b"connection: close" in head.lower()
            writer.write(_ANSWER_CLOSE if close else _ANSWER)
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def _serve() -> None:
    server = await asyncio.start_server(_connection, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    async with server:
        await server.serve_forever()


@contextmanager
def local_server() -> Iterator[str]:
    process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve"], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


# -- the clients ---------------------------------------------------------------------------------


@dataclass
class Client:
    """``send(n)`` makes ``n`` requests (their bodies read); ``close()`` releases it."""

    send: Callable[[int], None]
    close: Callable[[], None]


def make_client(library: str, base: str) -> Client:
    url = base + PATH
    if library == "httpx":
        import httpx

        client = httpx.Client()

        def send(n: int) -> None:
            for _ in range(n):
                client.get(url).read()

        return Client(send, client.close)
    if library == "httpx-async":
        import httpx

        loop = asyncio.new_event_loop()
        async_client = httpx.AsyncClient()

        async def many(n: int) -> None:
            for _ in range(n):
                response = await async_client.get(url)
                await response.aread()

        def close() -> None:
            loop.run_until_complete(async_client.aclose())
            loop.close()

        return Client(lambda n: loop.run_until_complete(many(n)), close)
    if library == "requests":
        import requests

        session = requests.Session()

        def send(n: int) -> None:
            for _ in range(n):
                session.get(url).content  # noqa: B018 - the body is read, as a caller does

        return Client(send, session.close)
    if library == "urllib3":
        import urllib3

        manager = urllib3.PoolManager()

        def send(n: int) -> None:
            for _ in range(n):
                manager.request("GET", url).data  # noqa: B018

        return Client(send, manager.clear)
    if library == "urllib":
        import urllib.request

        def send(n: int) -> None:
            for _ in range(n):
                with urllib.request.urlopen(url) as response:
                    response.read()

        return Client(send, lambda: None)
    raise SystemExit(f"unknown library {library!r}; known: {', '.join(LIBRARIES)}")


def otel_instrumentor(library: str) -> Any:
    if library.startswith("httpx"):
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        return HTTPXClientInstrumentor()
    if library == "requests":
        from opentelemetry.instrumentation.requests import RequestsInstrumentor

        return RequestsInstrumentor()
    if library == "urllib3":
        from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

        return URLLib3Instrumentor()
    from opentelemetry.instrumentation.urllib import URLLibInstrumentor

    return URLLibInstrumentor()


def infratrace_module(library: str) -> Any:
    import importlib

    return importlib.import_module(f"infratrace_http.{library.removesuffix('-async')}")


# -- one scenario, switched on and off -----------------------------------------------------------


@dataclass
class Scenario:
    """One way of sending: ``on()``/``off()`` switch its instrumentation (outside any
    timed part), ``parent()`` is the span a chunk of requests runs in, ``flush()`` waits
    for its tracer's background work; ``spans()`` is what it wrote or exported."""

    name: str
    on: Callable[[], None] = lambda: None
    off: Callable[[], None] = lambda: None
    parent: Callable[[], AbstractContextManager[Any]] = nullcontext
    flush: Callable[[], Any] = lambda: None
    spans: Callable[[], int] = lambda: 0
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    requests: int = 0
    parents: int = 0

    def expected_spans(self) -> int:
        """One span a request and one a parent; none when bare; only the parents when
        the host is excluded."""
        if self.name == "bare":
            return 0
        return self.parents if self.name == "infratrace excluded" else self.requests + self.parents


def infratrace_config(directory: Path) -> str:
    """The file driver writing JSON lines. The connection's own flush interval is 5 s,
    the BatchSpanProcessor's: every chunk ends with a flush anyway, and under valgrind
    (~50x slower) the default 0.2 s would add idle wakes the native run does not have."""
    return (
        f'[trace]\ndriver = "file"\njson = true\nbuffer = 1048576\ntimeout = "5s"\n'
        f'[trace.setting]\noutput = "{directory}/spans.jsonl"\n'
    )


def build(library: str, name: str, directory: Path) -> Scenario:
    if name == "bare":
        return Scenario(name)
    if name == "otel":
        from _baseline import otel_provider  # benchmarks/ is on sys.path when run as a script

        provider, exporter = otel_provider()
        tracer = provider.get_tracer("bench")
        instrumentor = otel_instrumentor(library)
        return Scenario(
            name,
            on=lambda: instrumentor.instrument(tracer_provider=provider),
            off=instrumentor.uninstrument,
            parent=lambda: tracer.start_as_current_span("GET /orders/{id}"),
            flush=lambda: provider.force_flush(60_000),
            spans=lambda: exporter.count,
        )
    import infratrace

    infratrace.configure(infratrace_config(directory))
    module = infratrace_module(library)

    def written() -> int:
        stats = infratrace.stats()
        lost = {key: stats[key] for key in ("dropped_count", "sampled_out_count", "queue_len") if stats[key]}
        if lost or stats["written_count"] != stats["ended_count"]:
            raise SystemExit(f"infratrace lost spans: {stats['written_count']} of {stats['ended_count']} written, {lost}")
        return int(stats["written_count"])

    options = INSTRUMENT_OPTIONS[name]
    return Scenario(
        name,
        on=lambda: module.instrument(**options),
        off=module.uninstrument,
        parent=lambda: infratrace.begin("http:GET /orders/{id}"),
        flush=lambda: infratrace.force_flush(60),
        spans=written,
    )


def drive(client: Client, scenario: Scenario, n: int) -> None:
    """``n`` requests in chunks, each chunk in a parent span and followed by a flush."""
    done = 0
    while done < n:
        k = min(CHUNK, n - done)
        with scenario.parent():
            client.send(k)
        scenario.flush()
        done += k
        scenario.requests += k
        scenario.parents += 1


# -- time mode ----------------------------------------------------------------------------------


def time_library(library: str, base: str, rounds: int, per_round: int) -> dict[str, Any]:
    """All three scenarios of one library in this process, rounds interleaved."""
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        scenarios = [build(library, name, Path(tmp)) for name in SCENARIOS]
        client = make_client(library, base)
        for scenario in scenarios:  # warm up: connections, caches, first-call imports
            scenario.on()
            drive(client, scenario, WARMUP)
            scenario.off()
        for index in range(rounds):
            order = scenarios[index % 3 :] + scenarios[: index % 3]
            for scenario in order:
                scenario.on()
                gc.collect()
                start, cpu_start = time.perf_counter(), time.process_time()
                drive(client, scenario, per_round)
                scenario.cpu.append((time.process_time() - cpu_start) / per_round * 1e6)
                scenario.wall.append((time.perf_counter() - start) / per_round * 1e6)
                scenario.off()
        client.close()
        for scenario in scenarios:
            spans, expected = scenario.spans(), scenario.expected_spans()
            if spans != expected:
                raise SystemExit(f"{library} / {scenario.name}: {spans} spans, expected {expected}")
        result = {s.name: {"cpu": s.cpu, "wall": s.wall, "spans": s.spans()} for s in scenarios}
        if "infratrace" in result:
            import infratrace

            infratrace.shutdown()
        return result


def paired(bare: list[float], otel: list[float], traced: list[float]) -> tuple[float, float, float]:
    ratios = [(t - b) / (o - b) for b, o, t in zip(bare, otel, traced, strict=True) if o > b]
    low, _, high = statistics.quantiles(ratios, n=4)
    return statistics.median(ratios), low, high


def time_report(results: dict[str, dict[str, Any]], rounds: int, per_round: int) -> list[str]:
    lines = [
        f"time: {rounds} rounds x {per_round} requests per scenario, medians of µs per request (process CPU, all threads / wall)",
        "",
        "| library | bare | otel added | infratrace added | infratrace / otel (medians) | paired per round: median (quartiles) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for library, result in results.items():
        cells = [library]
        med = {name: (statistics.median(result[name]["cpu"]), statistics.median(result[name]["wall"])) for name in SCENARIOS}
        bare_cpu, bare_wall = med["bare"]
        otel_cpu, otel_wall = med["otel"][0] - bare_cpu, med["otel"][1] - bare_wall
        ours_cpu, ours_wall = med["infratrace"][0] - bare_cpu, med["infratrace"][1] - bare_wall
        cells.append(f"{bare_cpu:.1f} / {bare_wall:.1f}")
        cells.append(f"{otel_cpu:.1f} / {otel_wall:.1f}")
        cells.append(f"{ours_cpu:.1f} / {ours_wall:.1f}")
        cells.append(f"**{ours_cpu / otel_cpu:.3f}** / {ours_wall / otel_wall:.3f}")
        ratio, low, high = paired(result["bare"]["cpu"], result["otel"]["cpu"], result["infratrace"]["cpu"])
        cells.append(f"{ratio:.3f} ({low:.3f}–{high:.3f})")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# -- instructions mode ----------------------------------------------------------------------------


def worker(library: str, name: str, counts: tuple[int, int], base: str, directory: Path) -> None:
    scenario = build(library, name, directory)
    client = make_client(library, base)
    scenario.on()
    for count in counts:
        if count:
            drive(client, scenario, count)
    client.close()
    spans, expected = scenario.spans(), scenario.expected_spans()
    if spans != expected:
        raise SystemExit(f"{library} / {name}: {spans} spans, expected {expected}")
    if name.startswith("infratrace"):
        import infratrace

        infratrace.shutdown()
    (directory / "result.json").write_text(json.dumps({"spans": spans}))


@dataclass
class Run:
    library: str
    scenario: str
    counts: tuple[int, int]
    instructions: int
    threads: list[int]


def run_one(library: str, scenario: str, counts: tuple[int, int], base: str, valgrind: bool = True) -> Run:
    from bench_instructions import callgrind_totals, child_env

    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        directory = Path(tmp)
        out = directory / "callgrind.out"
        command = [
            sys.executable, str(Path(__file__).resolve()), "--worker", library, scenario,
            "--counts", f"{counts[0]},{counts[1]}", "--url", base, "--dir", str(directory),
        ]  # fmt: skip
        if valgrind:
            command = ["valgrind", "--tool=callgrind", "--separate-threads=yes", f"--callgrind-out-file={out}", *command]
        done = subprocess.run(command, env=child_env(), cwd=ROOT, capture_output=True, text=True, check=False)
        if done.returncode or not (directory / "result.json").exists():
            raise SystemExit(f"{library} / {scenario} {counts} failed ({done.returncode}):\n{done.stdout}{done.stderr[-4000:]}")
        if scenario.startswith("infratrace"):
            spans = json.loads((directory / "result.json").read_text())["spans"]
            with (directory / "spans.jsonl").open("rb") as lines:
                if sum(1 for _ in lines) != spans:
                    raise SystemExit(f"{library} / {scenario}: the file does not have one line per span written")
        threads = callgrind_totals(out) if valgrind else []
    return Run(library, scenario, counts, sum(threads), threads)


def instructions_report(libraries: list[str], base: str, n: int, jobs: int, parts: bool) -> list[str]:
    scenarios = SCENARIOS + PARTS if parts else SCENARIOS
    for library in libraries:  # pre-flight: every scenario once, natively, few requests
        for scenario in scenarios:
            run_one(library, scenario, (20, 20), base, valgrind=False)
    work = [
        (library, scenario, counts) for library in libraries for scenario in scenarios for counts in ((WARMUP, n), (WARMUP, 0))
    ]
    print(f"pre-flight ok; {len(work)} valgrind runs, {jobs} at a time", file=sys.stderr)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        runs = list(pool.map(lambda job: run_one(job[0], job[1], job[2], base), work))
    per: dict[tuple[str, str], tuple[float, float]] = {}
    for measured, baseline in zip(runs[::2], runs[1::2], strict=True):
        main = (measured.threads[0] - baseline.threads[0]) / n
        total = (measured.instructions - baseline.instructions) / n
        per[(measured.library, measured.scenario)] = (total, total - main)
        print(f"  {measured.library:12} {measured.scenario:20} {total:>12,.0f} instr/request", file=sys.stderr)
    lines = [
        f"instructions (callgrind): (run of {WARMUP}+{n} requests − run of {WARMUP}) / {n}, all threads",
        "",
        "| library | bare | otel added | infratrace added | infratrace / otel | of which other threads (otel / infratrace) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for library in libraries:
        bare = per[(library, "bare")][0]
        otel, otel_rest = per[(library, "otel")]
        ours, ours_rest = per[(library, "infratrace")]
        lines.append(
            f"| {library} | {bare:,.0f} | {otel - bare:+,.0f} | {ours - bare:+,.0f} | **{(ours - bare) / (otel - bare):.3f}** "
            f"| {otel_rest - per[(library, 'bare')][1]:,.0f} / {ours_rest - per[(library, 'bare')][1]:,.0f} |"
        )
    if parts:
        lines += [
            "",
            "infratrace's added instructions cut in three: the wrapper (the host excluded: no span, no header), "
            "the span (propagate=False, minus the wrapper), the header (the rest: writing it, and the library sending it)",
            "",
            "| library | wrapper | span | header | total |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for library in libraries:
            bare = per[(library, "bare")][0]
            wrapper = per[(library, "infratrace excluded")][0] - bare
            span = per[(library, "infratrace no header")][0] - bare - wrapper
            header = per[(library, "infratrace")][0] - bare - wrapper - span
            lines.append(f"| {library} | {wrapper:,.0f} | {span:,.0f} | {header:,.0f} | {wrapper + span + header:,.0f} |")
    return lines


# -- main ---------------------------------------------------------------------------------------


def describe(argv: list[str]) -> list[str]:
    return [
        "command: " + shlex.join([os.path.relpath(sys.executable, ROOT), os.path.relpath(__file__, ROOT), *argv]),
        f"python {sys.version.split()[0]}, git {git_head(ROOT)}; " + ", ".join(package_version(name) for name in VERSIONS),
    ]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(LIBRARIES), help="comma-separated: " + ",".join(LIBRARIES))
    parser.add_argument("--rounds", type=int, default=31, help="time mode: rounds")
    parser.add_argument("--per-round", type=int, default=200, help="time mode: requests per scenario per round")
    parser.add_argument("--instructions", action="store_true", help="count instructions with callgrind instead of timing")
    parser.add_argument("--requests", type=int, default=500, help="instructions mode: measured requests per scenario")
    parser.add_argument("--jobs", type=int, default=2, help="instructions mode: valgrind processes at a time")
    parser.add_argument("--parts", action="store_true", help="instructions mode: also infratrace's cost cut in three")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", nargs=2, metavar=("LIBRARY", "SCENARIO"), help=argparse.SUPPRESS)
    parser.add_argument("--time-worker", metavar="LIBRARY", help=argparse.SUPPRESS)
    parser.add_argument("--counts", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve())
        return 0
    if args.worker:
        warmup, n = (int(value) for value in args.counts.split(","))
        worker(args.worker[0], args.worker[1], (warmup, n), args.url, args.dir)
        return 0
    if args.time_worker:
        result = time_library(args.time_worker, args.url, args.rounds, args.per_round)
        args.dir.joinpath("result.json").write_text(json.dumps(result))
        return 0
    libraries = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(libraries) - set(LIBRARIES)
    if unknown:
        parser.error(f"unknown libraries {sorted(unknown)}; known: {', '.join(LIBRARIES)}")
    started = time.perf_counter()
    lines = ["## HTTP clients: cost added per outgoing request", "", *describe(argv), ""]
    with local_server() as base:
        if args.instructions:
            lines += instructions_report(libraries, base, args.requests, args.jobs, args.parts)
        else:
            results = {}
            for library in libraries:  # one process per library: no library's state leaks into another's
                with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
                    command = [
                        sys.executable, str(Path(__file__).resolve()), "--time-worker", library, "--url", base,
                        "--dir", tmp, "--rounds", str(args.rounds), "--per-round", str(args.per_round),
                    ]  # fmt: skip
                    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
                    if done.returncode:
                        raise SystemExit(f"{library} failed ({done.returncode}):\n{done.stdout}{done.stderr[-4000:]}")
                    results[library] = json.loads(Path(tmp, "result.json").read_text())
                print(f"  {library} done", file=sys.stderr)
            lines += time_report(results, args.rounds, args.per_round)
    lines += ["", f"took {time.perf_counter() - started:.0f} s"]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
