"""Where a span's instructions go: the core scenario of bench_core.py (a child span
with 3 attributes under a parent, written as a JSON line) cut into four parts, each
counted by valgrind's callgrind on its own.

    .venv/bin/python benchmarks/bench_span_parts.py [--spans 20000] [--jobs 2] [--top 8]

Parts (``N`` child spans, in chunks of 500 under a parent span, as bench_core.py):

- ``a``: ``with infratrace.begin("service:user.load", ATTRS): pass``, the ended span
  handed to a sink that discards it (the ``SpanSink.append`` contract; no pipeline, no
  thread);
- ``b``: ``infratrace._spandata.snapshot`` of each ended span into its ``SpanData``
  (the spans of a chunk held until then, as the pipeline's queue holds them);
- ``c``: the file driver's encoding step (``FileDriver.encode``, done where the span
  ends: ``stable_record`` and msgspec's encoding of the record as one line);
- ``d``: ``FileDriver.write`` of each chunk's ``SpanData`` batch (the encoding of ``c``,
  then ``write_encoded``: the lock file's ``flock``, the ``stat`` that notices a
  rotation by another process, one ``os.write``) minus part ``c``: the file write.

Details, measured the same way: the floor of any span API written in Python (the loop
with a ``with`` on a context manager whose ``__enter__``/``__exit__`` do nothing),
``begin`` of the installed hook called directly (without the public function's
delegation), ``infratrace.Span(...)`` made and dropped (ids, clock, the copy of the
attributes; no ``with``), and ``stable_record`` alone.

Method. Each measurement runs in a child process under ``valgrind --tool=callgrind``
twice, with the same preparation (for ``b``, ``c`` and ``d`` every chunk's spans begun
and ended, and for ``c`` and ``d`` snapshotted, in both runs): once doing the part for
all ``N`` spans (and their parents), once for 1 span. Instructions per span =
(N-span run − 1-span run) / N, all instructions of the process (the children start no
thread). Each runs with the garbage collector disabled (``gc.disable()`` before
infratrace is imported) and enabled (Python's default thresholds): the difference is
what the collector's passes over the young objects cost. The children run with
``PYTHONHASHSEED=0`` and without writing bytecode caches. ``--top`` lists, for the
gc-enabled runs of the four parts, the C functions with the most instructions of their
own per span (``callgrind_annotate`` of both runs, subtracted): what the interpreter
spends each part on.

What the parts leave out, and bench_instructions.py's core figure includes: the
pipeline's hand-over (``Pipeline.append``: the trace's decision, the backlog, its lock
and counters), the connection thread waking and writing, ``force_flush``, and the
collector's passes over what waits in the backlog.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHUNK = 500
ATTRS = {"user.id": 1001, "route": "/users/{id}", "weight": 2.5}
PARTS = {
    "a": "(a) begin + end into a discarding sink",
    "b": "(b) snapshot into SpanData",
    "c": "(c) the line: stable_record + msgspec encoding",
    "d": "(d) file write (FileDriver.write − c)",
}
DETAILS = {
    "a-floor": "of (a): the loop with a `with` on a do-nothing Python context manager",
    "a-hook": "of (a): the hook's `begin` called directly (no public delegation)",
    "a-span": "of (a): `infratrace.Span(...)` made and dropped, no `with`",
    "c-record": "of (c): `stable_record` alone",
}


# -- the child process (run under valgrind) -------------------------------------------


class DiscardSink:
    """A sink that drops every span (``SpanSink.append``); every trace is kept by the
    one connection it stands for (``SpanSink.local_root``)."""

    def __init__(self, keep: list[Any] | None = None) -> None:
        from infratrace._sampling import LocalTrace

        self.kept = LocalTrace(self, 1, 0, 1, "", 0)  # one shared decision, as the pipeline's
        self.spans = keep

    def local_root(self, span: Any, flags: int | None, tracestate: str) -> Any:
        return self.kept

    def append(self, span: Any) -> None:
        if self.spans is not None:
            self.spans.append(span)


class Nothing:
    """A context manager that does nothing: the floor of ``with span: ...``."""

    def __enter__(self) -> Nothing:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def chunks(total: int) -> list[int]:
    """``total`` child spans as bench_core.py runs them: chunks of ``CHUNK``."""
    return [CHUNK] * (total // CHUNK) if total >= CHUNK else [total]


def make_spans(begin: Callable[..., Any], size: int) -> None:
    """One chunk: a parent span and ``size`` child spans with 3 attributes."""
    with begin("http:GET /users/{id}"):
        for _ in range(size):
            with begin("service:user.load", ATTRS):
                pass


def span_api_detail(part: str, measured: int) -> None:
    """``a`` and its details: spans begun (or made) for ``measured`` children."""
    import infratrace
    from infratrace import _span

    _span.set_sink(DiscardSink())
    begin = infratrace.begin
    for size in chunks(measured):
        if part == "a":
            make_spans(begin, size)
        elif part == "a-hook":
            make_spans(infratrace.get_hook().begin, size)
        elif part == "a-floor":
            nothing = Nothing()
            with nothing:
                for _ in range(size):
                    with nothing:
                        pass
        else:  # a-span
            span_class = infratrace.Span
            with begin("http:GET /users/{id}") as parent:
                for _ in range(size):
                    span_class("service:user.load", dict(ATTRS), "internal", parent)


def worker(part: str, total: int, measured: int, directory: Path) -> None:
    """Prepare ``total`` spans in chunks, do ``part`` for ``measured`` of them (all of
    them, or 1)."""
    if part.startswith("a"):
        span_api_detail(part, measured)
        return
    import infratrace
    from infratrace import _fields, _span, _spandata
    from infratrace.drivers.file import FileDriver

    config = infratrace.load_config(
        f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{directory}/spans.jsonl"\n'
    )
    connection = config.connections[0]
    resource = _spandata.Resource({**config.resource, "process.pid": os.getpid()})
    begin = infratrace.begin
    snapshot = _spandata.snapshot
    stable_record = _fields.stable_record
    collected: list[Any] = []
    _span.set_sink(DiscardSink(collected))
    line = _fields.line_encoder(connection)
    driver = FileDriver(connection)
    remaining = 1 if measured == 1 else sys.maxsize  # 1 span, or every span and parent
    for size in chunks(total):
        collected.clear()
        make_spans(begin, size)
        spans = collected[:]
        collected.clear()
        take = min(remaining, len(spans))
        remaining -= take
        if part == "b":
            batch = [snapshot(span, resource) for span in spans[:take]]
            del batch  # the pipeline hands it on; the spans go with the chunk
            continue
        batch = [snapshot(span, resource) for span in spans]
        if part == "c":
            for data in batch[:take]:
                line(data)
        elif part == "c-record":
            for data in batch[:take]:
                stable_record(data)
        elif take:  # d
            driver.write(batch[:take])  # its encode (c) for each span, then write_encoded
        del batch
    driver.close()


# -- the parent -------------------------------------------------------------------------

Run = tuple[int, dict[str, int]]  # instructions, self instructions per function


def self_costs(out: Path) -> dict[str, int]:
    """Instructions of each function's own code, from ``callgrind_annotate``; recursion
    levels (``f'2``) merged."""
    text = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--inclusive=no", str(out)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    costs: dict[str, int] = {}
    for line in text.splitlines():
        match = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+(\S+)(?: \[(.*)\])?", line)
        if match is None or "PROGRAM TOTALS" in line:
            continue
        name = re.sub(r"'\d+$", "", match.group(2).rsplit("/", 1)[-1])
        if name.startswith("???") and match.group(3):  # no symbols: name the library
            name = match.group(3).rsplit("/", 1)[-1].split(".")[0] + name[3:]
        costs[name] = costs.get(name, 0) + int(match.group(1).replace(",", ""))
    return costs


def worker_command(part: str, total: int, measured: int, directory: Path, gc_enabled: bool) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        part,
        "--counts",
        f"{total},{measured}",
        "--dir",
        str(directory),
        "--gc",
        "on" if gc_enabled else "off",
    ]


def run_one(part: str, total: int, measured: int, gc_enabled: bool) -> Run:
    with tempfile.TemporaryDirectory(prefix="bench-span-parts-") as tmp:
        directory = Path(tmp)
        out = directory / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        command += worker_command(part, total, measured, directory, gc_enabled)
        env = dict(os.environ, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
        collected = [line.split(":")[1] for line in done.stderr.splitlines() if "Collected :" in line]
        if done.returncode or len(collected) != 1:
            raise SystemExit(f"{part} {total},{measured} failed ({done.returncode}):\n{done.stdout}{done.stderr[-4000:]}")
        if part == "d" and measured > 1:  # every span and parent is a line of the file
            with (directory / "spans.jsonl").open("rb") as lines:
                written = sum(1 for _ in lines)
            if written != total + total // CHUNK:
                raise SystemExit(f"{part}: the file has {written} lines, expected {total + total // CHUNK}")
        return int(collected[0]), self_costs(out) if part in PARTS else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=20_000, help="N: child spans (a multiple of 500)")
    parser.add_argument("--jobs", type=int, default=2, help="valgrind processes at a time")
    parser.add_argument("--top", type=int, default=8, help="C functions listed per part")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--counts", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--gc", choices=("on", "off"), default="on", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        if args.gc == "off":
            gc.disable()  # before infratrace is imported
        total, measured = (int(value) for value in args.counts.split(","))
        worker(args.worker, total, measured, args.dir)
        return 0
    n = max(CHUNK, args.spans - args.spans % CHUNK)
    started = time.perf_counter()
    names = [*PARTS, *DETAILS]
    for part in names:  # fail fast, without valgrind
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(worker_command(part, CHUNK, CHUNK, Path(tmp), True), check=True)
    jobs = [(part, n, measured, gc_on) for part in names for gc_on in (False, True) for measured in (n, 1)]
    print(f"{len(jobs)} valgrind runs, {args.jobs} at a time", file=sys.stderr)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = dict(zip(jobs, pool.map(lambda job: run_one(*job), jobs), strict=True))

    def per_span(part: str, gc_on: bool) -> float:
        return (runs[(part, n, n, gc_on)][0] - runs[(part, n, 1, gc_on)][0]) / n

    def functions(part: str) -> dict[str, float]:
        big, small = runs[(part, n, n, True)][1], runs[(part, n, 1, True)][1]
        return {name: (cost - small.get(name, 0)) / n for name, cost in big.items()}

    figures = {part: (per_span(part, False), per_span(part, True)) for part in names}
    encode, write = figures["c"], figures["d"]
    figures["d"] = (write[0] - encode[0], write[1] - encode[1])
    lines = [
        "## Instructions per child span, by part (valgrind --tool=callgrind)",
        "",
        f"command: {os.path.relpath(sys.executable, ROOT)} {os.path.relpath(__file__, ROOT)} {' '.join(sys.argv[1:])}".rstrip(),
        f"python {sys.version.split()[0]}; N = {n} child spans in chunks of {CHUNK} under a parent (its share included); "
        "(N-span run − 1-span run) / N",
        "",
        "| part | gc disabled | gc enabled |",
        "| --- | ---: | ---: |",
    ]
    for part, label in PARTS.items():
        off, on = figures[part]
        lines.append(f"| {label} | {off:,.0f} | {on:,.0f} |")
    total_off = sum(figures[part][0] for part in PARTS)
    total_on = sum(figures[part][1] for part in PARTS)
    lines.append(f"| sum | {total_off:,.0f} | {total_on:,.0f} |")
    for part, label in DETAILS.items():
        off, on = figures[part]
        lines.append(f"| {label} | {off:,.0f} | {on:,.0f} |")
    lines.append("")
    if args.top:
        lines.append(f"C functions with the most instructions of their own per span (gc enabled; top {args.top}):")
        lines.append("")
        for part, label in PARTS.items():
            own = functions(part)
            if part == "d":
                encoding = functions("c")
                own = {name: cost - encoding.get(name, 0.0) for name, cost in own.items()}
            listed = sorted(own.items(), key=lambda item: -item[1])[: args.top]
            lines.append(f"- {label}: " + ", ".join(f"{name} {cost:,.0f}" for name, cost in listed))
        lines.append("")
    lines.append(f"took {time.perf_counter() - started:.0f} s")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
