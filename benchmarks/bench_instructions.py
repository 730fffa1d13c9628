"""CPU instructions per request (per span for ``core``) added by infratrace vs the
OpenTelemetry SDK, counted by valgrind's callgrind: a deterministic companion to the
timings of the other benchmarks, which move by ±50% between runs on a shared VM.

    .venv/bin/python benchmarks/bench_instructions.py [--requests 1000] [--spans 20000]
        [--only core,asgi,flask,django] [--jobs 2]

Method. Every scenario of bench_core.py (``bare call``, ``infratrace discard``,
``infratrace file json``, ``otel sdk``: chunks of 500 child spans with 3 attributes
under a parent, a flush per chunk) and of bench_asgi.py / bench_flask.py /
bench_django.py (WSGI) (``bare``, ``otel``, ``infratrace file json``, and for ASGI
also ``otel lean``: OpenTelemetry's middleware with ``exclude_spans=["receive",
"send"]``) — built by those modules' own functions — runs in a child process under
``valgrind --tool=callgrind`` twice:

1. set-up (imports, app, tracer) + a warm-up (300 requests, or one chunk of spans)
   and the tracer's flush;
2. the same, then N more requests (or spans) and the flush.

Instructions per request = (instructions of 2 − instructions of 1) / N, over all
threads: the background work (export, JSON encoding, file writes) is counted, as the
flush ends both runs. The children run with ``PYTHONHASHSEED=0`` and without writing
bytecode caches, so both runs of a scenario execute the same start-up. After the
requests, each child checks that infratrace wrote (``infratrace.stats()``) and
OpenTelemetry exported every span, and this script checks that the JSON file has one
line per span; any loss fails the run. "added" = scenario − bare; "added / OTel added"
(OpenTelemetry's default set-up; for ASGI also its lean one) is the figure comparable
to the other benchmarks' ratios.

Limits. Instructions are not time. Not counted: cache and TLB misses, branch
mispredictions, the kernel's side of system calls (``write``, ``futex``) and page
faults, waiting for the GIL or a lock. So a scenario that allocates more memory,
writes a file or hands the GIL between threads more often costs relatively more time
than its instruction count says. Valgrind also runs one thread at a time and ~50x
slower than native: work driven by the clock is inflated — infratrace's connection thread
wakes every 0.2 s of wall time (~20k instructions a wake when idle), OpenTelemetry's
batch processor every 5 s — and GIL hand-offs between threads follow valgrind's
scheduling, not the real one's. Each table is followed by an estimate of the connection
thread's idle wakes in infratrace's figure (from a calibration run of an idle pipeline); it is
not subtracted. The "other threads" column is what background threads execute; the
split between threads moves more between runs than the total, as some work (an
export, a write) can land on either side. A full (generation 2) garbage collection
falls in the measured part of some scenarios and not of others (the children's gc
counts are printed to stderr): a real cost, but a lumpy one. Repeated runs agree to
~0.1-1% per figure (Django's to ~3%).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _report import git_head, package_version  # benchmarks/ is on sys.path when run as a script

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WARMUP_REQUESTS = 300
BARE, OTEL, OTEL_LEAN = "bare", "otel", "otel lean"
IDLE = ("idle", "infratrace connection thread")  # the calibration: seconds of an idle pipeline
IDLE_SECONDS = (1, 10)  # slept in the set-up-only run, then more in the measured run
TARGETS: dict[str, tuple[str, ...]] = {
    "core": ("bare call", "infratrace discard", "infratrace file json", "otel sdk"),
    "asgi": (BARE, OTEL, OTEL_LEAN, "infratrace file json"),
    "flask": (BARE, OTEL, "infratrace file json"),
    "django": (BARE, OTEL, "infratrace file json"),
}
TITLES = {
    "core": "core: one child span with 3 attributes (bench_core.py), per span",
    "asgi": "asgi: Starlette app (bench_asgi.py), per request",
    "flask": "flask: WSGI app (bench_flask.py), per request",
    "django": "django: WSGI handler (bench_django.py), per request",
}
VERSIONS = (
    "infratrace",
    "starlette",
    "flask",
    "werkzeug",
    "django",
    "asgiref",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-asgi",
    "opentelemetry-instrumentation-starlette",
    "opentelemetry-instrumentation-wsgi",
    "opentelemetry-instrumentation-flask",
    "opentelemetry-instrumentation-django",
)


# -- the child process (run under valgrind) -------------------------------------------


def infratrace_counts(expected_per_request: int | None, requests: int) -> int:
    """Check that infratrace wrote every span it was given; return how many."""
    import infratrace

    if not infratrace.force_flush(60):
        raise SystemExit("infratrace: force_flush timed out")
    stats = infratrace.stats()
    written = int(stats["written_count"])
    lost = {key: stats[key] for key in ("dropped_count", "sampled_out_count", "queue_len") if stats[key]}
    if lost or written != stats["ended_count"]:
        raise SystemExit(f"infratrace lost spans: written {written} of {stats['ended_count']} ended, {lost}")
    if expected_per_request is not None and written != expected_per_request * requests:
        raise SystemExit(f"infratrace wrote {written} spans for {requests} requests, expected {expected_per_request} each")
    infratrace.shutdown()  # closes the file the parent counts the lines of
    return written


def check_exported(exported: int, expected: int) -> int:
    if exported != expected:
        raise SystemExit(f"opentelemetry exported {exported} spans, expected {expected}")
    return exported


def work_core(scenario: str, counts: tuple[int, int], directory: Path) -> dict[str, Any]:
    import bench_core as core

    total = sum(counts)
    spans = total + total // core.CHUNK  # the child spans and their parents
    if scenario == "bare call":
        for count in counts:
            core.bare_loop(count)
        return {}
    if scenario == "otel sdk":
        provider, exporter = core.otel_sdk()
        tracer = provider.get_tracer("bench")
        for count in counts:
            core.otel_loop(provider, tracer, count)
        provider.shutdown()
        return {"otel": check_exported(exporter.count, spans)}
    import infratrace

    infratrace.configure(core.infratrace_config("discard" if scenario == "infratrace discard" else "file", directory))
    for count in counts:
        core.infratrace_loop(count)
    core.check_infratrace(infratrace.stats(), total)
    return {"infratrace": infratrace_counts(None, spans)}


def work_web(target: str, scenario: str, counts: tuple[int, int], directory: Path) -> dict[str, Any]:
    """asgi / flask: the bench module's ``Scenario`` builders and ``drive``."""
    bench: Any = importlib.import_module(f"bench_{target}")
    drive: Callable[[Any, int], None] = bench.drive
    if target == "asgi":
        loop = asyncio.new_event_loop()

        def drive(app: Any, n: int) -> None:
            loop.run_until_complete(bench.drive(app, n))

    builders: dict[str, Callable[[], Any]] = {
        BARE: bench.bare,
        OTEL: bench.otel,
        OTEL_LEAN: lambda: bench.otel_lean(),
        "infratrace file json": lambda: bench.infratrace_scenario(directory, "file"),
    }
    built = builders[scenario]()
    for count in counts:
        drive(built.app, count)
        built.flush()
    requests = sum(counts)
    if scenario in (OTEL, OTEL_LEAN):
        return {"otel": check_exported(built.exported(), built.spans_per_request * requests)}
    if scenario == BARE:
        return {}
    return {"infratrace": infratrace_counts(built.spans_per_request, requests)}


def work_django(scenario: str, counts: tuple[int, int], directory: Path) -> dict[str, Any]:
    """bench_django's WSGI handlers and ``run_wsgi`` (which ends with the flush)."""
    import bench_django as bench

    bench.BENCH_URLS = "bench_django"  # imported under this name, not benchmarks.bench_django
    bench.setup_django()
    scenarios, provider, exporter = bench.build_scenarios(directory / "spans.jsonl")
    handlers, flush, prepare = scenarios["infratrace" if scenario.startswith("infratrace") else scenario]
    prepare()
    for count in counts:
        bench.run_wsgi(handlers[0], count, flush)
    requests = sum(counts)
    result: dict[str, Any] = {}
    result["otel"] = check_exported(exporter.count, requests if scenario == OTEL else 0)  # a server span a request
    written = infratrace_counts(None, requests)
    if scenario not in (BARE, OTEL):
        if written % requests:
            raise SystemExit(f"infratrace wrote {written} spans for {requests} requests")
        result["infratrace"] = written
    elif written:
        raise SystemExit(f"the {scenario} scenario wrote {written} infratrace spans")
    provider.shutdown()
    return result


def work_idle(counts: tuple[int, int], directory: Path) -> dict[str, Any]:
    """infratrace configured (as in core's ``infratrace file json``), one span written,
    then ``sum(counts)`` seconds of sleep: what its threads execute while idle."""
    import bench_core as core

    import infratrace

    infratrace.configure(core.infratrace_config("file", directory))
    with infratrace.begin("idle"):
        pass
    infratrace.force_flush()
    time.sleep(sum(counts))
    return {"infratrace": infratrace_counts(None, 1)}


def worker(target: str, scenario: str, counts: tuple[int, int], directory: Path, result: Path) -> None:
    if target == IDLE[0]:
        figures = work_idle(counts, directory)
    elif target == "core":
        figures = work_core(scenario, counts, directory)
    elif target == "django":
        figures = work_django(scenario, counts, directory)
    else:
        figures = work_web(target, scenario, counts, directory)
    figures["gc"] = [generation["collections"] for generation in gc.get_stats()]
    result.write_text(json.dumps(figures))


# -- the parent -------------------------------------------------------------------------


@dataclass
class Run:
    target: str
    scenario: str
    counts: tuple[int, int]  # warm-up, measured
    threads: list[int]  # instructions per thread, the main thread first
    seconds: float
    figures: dict[str, Any]

    @property
    def total(self) -> int:
        return sum(self.threads)


def callgrind_totals(out: Path) -> list[int]:
    """Instructions per thread from ``--separate-threads=yes`` output files (``out-01``...)."""
    totals: list[tuple[int, int]] = []
    for path in out.parent.glob(out.name + "-*"):  # "out" itself stays empty
        thread, total = 0, None
        for line in path.read_text().splitlines():
            if line.startswith("thread:"):
                thread = int(line.split()[1])
            elif line.startswith(("totals:", "summary:")):
                total = int(line.split()[1])
        if total is None:
            raise SystemExit(f"no totals in {path}")
        totals.append((thread, total))
    if not totals:
        raise SystemExit(f"callgrind wrote no {out}*")
    return [total for _, total in sorted(totals)]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
    return env


def worker_command(target: str, scenario: str, counts: tuple[int, int], directory: Path) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        target,
        scenario,
        "--counts",
        f"{counts[0]},{counts[1]}",
        "--dir",
        str(directory),
    ]


def run_one(target: str, scenario: str, counts: tuple[int, int], valgrind: bool = True) -> Run:
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        directory = Path(tmp)
        out = directory / "callgrind.out"
        command = worker_command(target, scenario, counts, directory)
        if valgrind:
            command = ["valgrind", "--tool=callgrind", "--separate-threads=yes", f"--callgrind-out-file={out}", *command]
        start = time.perf_counter()
        done = subprocess.run(command, env=child_env(), cwd=ROOT, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        result = directory / "result.json"
        if done.returncode or not result.exists():
            raise SystemExit(f"{target} / {scenario} {counts} failed ({done.returncode}):\n{done.stdout}{done.stderr[-4000:]}")
        figures = json.loads(result.read_text())
        spans_file = directory / "spans.jsonl"
        if "infratrace" in figures and "file" in scenario:
            with spans_file.open("rb") as lines:
                count = sum(1 for _ in lines)
            if count != figures["infratrace"]:
                raise SystemExit(f"{target} / {scenario}: {count} lines in the file, {figures['infratrace']} spans written")
        threads = callgrind_totals(out) if valgrind else []
        collected = [line.split(":")[1] for line in done.stderr.splitlines() if "Collected :" in line]
        if valgrind and (len(collected) != 1 or int(collected[0]) != sum(threads)):
            raise SystemExit(f"{target} / {scenario}: valgrind collected {collected}, the thread files add up to {sum(threads)}")
    return Run(target, scenario, counts, threads, seconds, figures)


def counts_for(target: str, args: argparse.Namespace) -> tuple[int, int]:
    """(warm-up, measured): core's loops run whole chunks of spans."""
    if target != "core":
        return WARMUP_REQUESTS, args.requests
    from bench_core import CHUNK

    return CHUNK, max(CHUNK, args.spans - args.spans % CHUNK)


def measure(targets: list[str], args: argparse.Namespace) -> dict[tuple[str, str], tuple[Run, Run]]:
    """Both runs of every scenario, ``args.jobs`` valgrind processes at a time (the
    measured run of a scenario next to its set-up-only run)."""
    jobs: list[tuple[str, str, tuple[int, int]]] = []
    for target in targets:
        warmup, n = counts_for(target, args)
        for scenario in TARGETS[target]:
            jobs += [(target, scenario, (warmup, n)), (target, scenario, (warmup, 0))]
    jobs += [(*IDLE, IDLE_SECONDS), (*IDLE, (IDLE_SECONDS[0], 0))]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(lambda job: run_one(*job), jobs))
    for run in runs:
        print(
            f"  {run.target:6} {run.scenario:22} {run.counts[0]:>5}+{run.counts[1]:<6} {run.total:>15,} instr "
            f"({len(run.threads)} threads) {run.seconds:6.1f} s, gc collections {'/'.join(map(str, run.figures['gc']))}",
            file=sys.stderr,
        )
    return {(runs[i].target, runs[i].scenario): (runs[i], runs[i + 1]) for i in range(0, len(runs), 2)}


def preflight(targets: list[str]) -> None:
    """Every scenario once without valgrind and with few requests: fails fast on errors."""
    for target in targets:
        counts = (500, 500) if target == "core" else (20, 20)
        for scenario in TARGETS[target]:
            run_one(target, scenario, counts, valgrind=False)


def spans_per_request(figures: dict[str, Any], requests: int) -> str:
    spans = figures.get("infratrace", figures.get("otel"))
    return "0" if spans is None else f"{spans / requests:g}"


def idle_rate(results: dict[tuple[str, str], tuple[Run, Run]]) -> float:
    """Instructions per second of wall time that an idle infratrace pipeline executes."""
    measured, baseline = results[IDLE]
    return (measured.total - baseline.total) / measured.counts[1]


def table(target: str, results: dict[tuple[str, str], tuple[Run, Run]]) -> list[str]:
    scenarios = TARGETS[target]
    per: dict[str, tuple[float, float, float]] = {}  # all threads, main thread, other threads
    for scenario in scenarios:
        measured, baseline = results[(target, scenario)]
        n = measured.counts[1]
        main = (measured.threads[0] - baseline.threads[0]) / n
        rest = (sum(measured.threads[1:]) - sum(baseline.threads[1:])) / n
        per[scenario] = (main + rest, main, rest)
    bare = per[scenarios[0]][0]
    otel_names = [name for name in scenarios if name.startswith("otel")]  # the default set-up first
    otel_added = [per[name][0] - bare for name in otel_names]
    unit = "span" if target == "core" else "request"
    ratio_heads = " | ".join(f"added / {'OTel' if name in (OTEL, 'otel sdk') else name} added" for name in otel_names)
    lines = [
        f"### {TITLES[target]}",
        "",
        f"| scenario | spans/{unit}{' (incl. parents)' if target == 'core' else ''} | instructions/{unit} | main thread "
        f"| other threads | added vs bare | {ratio_heads} |",
        "| --- | ---: | ---: | ---: | ---: | ---: |" + " ---: |" * len(otel_names),
    ]
    for scenario in scenarios:
        measured, _ = results[(target, scenario)]
        requests = sum(measured.counts)
        spans = spans_per_request(measured.figures, requests)
        total, main, rest = per[scenario]
        added = total - bare
        cells = [scenario, spans, f"{total:,.0f}", f"{main:,.0f}", f"{rest:,.0f}", ""] + [""] * len(otel_names)
        if scenario != scenarios[0]:
            cells[5] = f"{added:+,.0f}"
            for index, reference in enumerate(otel_added):
                cells[6 + index] = f"{added / reference:.3f}"
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for scenario in scenarios:
        measured, baseline = results[(target, scenario)]
        if "infratrace" not in scenario:
            continue
        seconds = max(0.0, measured.seconds - baseline.seconds)
        idle = idle_rate(results) * seconds / measured.counts[1]
        added = per[scenario][0] - bare
        lines.append(
            f"- {scenario}: ≈ {idle:,.0f} instructions/{unit} ({idle / added:.1%} of its added) are idle wakes of "
            f"infratrace's connection thread during the {seconds:.1f} s more that valgrind took "
            f"(natively ~50x fewer a {unit}; valgrind artefact, not subtracted)"
        )
    return lines


def describe(argv: list[str]) -> list[str]:
    valgrind = subprocess.run(["valgrind", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "infratrace", "integrations"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split("\n")
    changed = [line[3:] for line in dirty if line.strip()]
    tree = f"git {git_head(ROOT)}" + (f" + uncommitted changes in {', '.join(changed)}" if changed else "")
    return [
        "command: " + shlex.join([os.path.relpath(sys.executable, ROOT), os.path.relpath(__file__, ROOT), *argv]),
        f"python {sys.version.split()[0]} ({sys.implementation.name}), {valgrind} (callgrind, --separate-threads=yes), "
        f"children with PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1",
        "versions: " + ", ".join(package_version(name) for name in VERSIONS),
        f"infratrace work tree: {tree}",
    ]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="measured requests per web scenario (after 300 warm-up)")
    parser.add_argument("--spans", type=int, default=20_000, help="measured child spans per core scenario (multiple of 500)")
    parser.add_argument("--only", default=",".join(TARGETS), help="comma-separated targets: " + ",".join(TARGETS))
    parser.add_argument("--jobs", type=int, default=2, help="valgrind processes at a time")
    parser.add_argument("--worker", nargs=2, metavar=("TARGET", "SCENARIO"), help=argparse.SUPPRESS)
    parser.add_argument("--counts", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        warmup, n = (int(value) for value in args.counts.split(","))
        target, scenario = args.worker
        worker(target, scenario, (warmup, n), args.dir, args.dir / "result.json")
        return 0
    targets = [target.strip() for target in args.only.split(",") if target.strip()]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; known: {', '.join(TARGETS)}")
    started = time.perf_counter()
    preflight(targets)
    runs = 2 * sum(len(TARGETS[target]) for target in targets) + 2  # + the idle calibration
    print(f"pre-flight ok; {runs} valgrind runs, {args.jobs} at a time:", file=sys.stderr)
    results = measure(targets, args)
    lines = [
        "## CPU instructions (valgrind --tool=callgrind)",
        "",
        *describe(argv),
        f"measured: (run − set-up-only run) / N, N = {args.requests} requests per web scenario after "
        f"{WARMUP_REQUESTS} warm-up requests, {counts_for('core', args)[1]} child spans per core scenario after "
        f"{counts_for('core', args)[0]}",
        "",
    ]
    for target in targets:
        lines += [*table(target, results), ""]
    lines.append(
        f"calibration: an idle infratrace pipeline (its connection thread wakes every 0.2 s) executes {idle_rate(results):,.0f} "
        f"instructions per second under valgrind"
    )
    lines.append(f"took {time.perf_counter() - started:.0f} s")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
