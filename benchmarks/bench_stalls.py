"""Does the application's thread stall under overload? Gaps between consecutive spans of
a thread that ends spans as fast as it can, with and without tracing.

    .venv/bin/python benchmarks/bench_stalls.py [--spans 1000000]

One thread ends ``--spans`` spans (3 attributes each) in a tight loop, far faster than
any destination takes them, and records how long each span took from the end of the
previous one. A "stall" is a gap over 5 ms (CPython's GIL switch interval is 5 ms, so
a background thread holding the GIL shows up as one). Scenarios:

- ``bare``: the same loop calling a plain function instead, run for as long as the
  longest traced scenario (what the machine itself does meanwhile: the scheduler, other
  processes, page faults);
- ``file``: the file driver writing JSON lines (``overflow = "sync"``, its default:
  when the backlog is full the thread that fills it writes, so no span is lost);
- ``otlp, receiver that never answers``: a network destination that accepts the
  connection and never replies (``overflow = "sample"``, its default: when the backlog
  is full whole traces are shed and counted, the application never waits);
- ``otlp, overflow = "drop"``: the same destination, new spans dropped and counted.

For each: spans per second, stalls per million spans and per second of running, the
longest gap, and the accounting (written + dropped + sampled out = ended, per
connection). Run it on a machine with nothing else to do: another process taking a core
makes stalls of its own.
"""

from __future__ import annotations

import argparse
import gc
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import infratrace

ATTRS = {"user.id": 1001, "route": "/users/{id}", "weight": 2.5}
STALL_NS = 5_000_000


def _silent_receiver() -> tuple[socket.socket, int, threading.Event]:
    """Accepts connections, reads what they send, never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        held: list[socket.socket] = []
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.settimeout(0.01)
                held.append(conn)
            except OSError:
                pass
            for conn in held:
                try:
                    conn.recv(1 << 20)
                except OSError:
                    pass
        for conn in held:
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server, int(server.getsockname()[1]), stop


def _loop(n: int, traced: bool) -> list[int]:
    gaps = [0] * n
    perf = time.perf_counter_ns
    begin = infratrace.begin

    def plain(name: str, attrs: dict[str, Any]) -> None:
        pass

    last = perf()
    for i in range(n):
        if traced:
            with begin("service:work", ATTRS):
                pass
        else:
            plain("service:work", ATTRS)
        now = perf()
        gaps[i] = now - last
        last = now
    return gaps


def _report(name: str, gaps: list[int], elapsed: float, figures: dict[str, Any] | None) -> None:
    n = len(gaps)
    stalls = sum(1 for gap in gaps if gap > STALL_NS)
    longest = max(gaps) / 1e6
    line = f"{name:<40} {n / elapsed:>12,.0f}/s {stalls * 1_000_000 / n:>8.1f} {stalls / elapsed:>8.1f} {longest:>9.1f} ms"
    if figures is not None:
        for conn, c in figures["connections"].items():
            accounted = c["written_count"] + c["dropped_count"] + c["sampled_out_count"]
            line += (
                f"   {conn}: written {c['written_count']:,} dropped {c['dropped_count']:,} sampled out {c['sampled_out_count']:,}"
            )
            ended = figures["ended_count"]
            line += " (= ended)" if accounted == ended else f" (≠ ended {ended:,})"
    print(line, flush=True)


def run(name: str, n: int, config: str | None) -> float:
    if config is not None:
        infratrace.configure(config)
    gc.collect()
    start = time.perf_counter()
    gaps = _loop(n, config is not None)
    elapsed = time.perf_counter() - start
    figures = None
    if config is not None:
        infratrace.shutdown(5)
        figures = infratrace.stats()
    _report(name, gaps, elapsed, figures)
    return elapsed


def run_bare(seconds: float) -> None:
    """The plain loop, repeated for ``seconds``."""
    gaps: list[int] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        gaps += _loop(1_000_000, False)
    _report("bare", gaps, time.perf_counter() - start, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.spans
    print(f"{'scenario':<40} {'spans':>14} {'stalls/M':>8} {'stalls/s':>8} {'longest':>12}")
    receiver, port, stop = _silent_receiver()
    try:
        with tempfile.TemporaryDirectory() as directory:
            output = Path(directory) / "spans.jsonl"
            otlp = f'driver = "otlp"\n[trace.setting]\nendpoint = "http://127.0.0.1:{port}/v1/traces"\ntimeout = "1s"\n'
            longest = max(
                run(
                    "file (overflow = sync)", n, f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{output}"\n'
                ),
                run("otlp, never answers (overflow = sample)", n, f"[trace]\n{otlp}"),
                run("otlp, never answers (overflow = drop)", n, f'[trace]\noverflow = "drop"\n{otlp}'),
            )
            run_bare(longest)
    finally:
        stop.set()
        receiver.close()


if __name__ == "__main__":
    main()
