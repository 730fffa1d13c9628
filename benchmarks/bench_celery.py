"""Microseconds added per task publish and per task execution by the Celery adapter:
infratrace vs OpenTelemetry.

    .venv/bin/python benchmarks/bench_celery.py [--tasks 2000] [--rounds 7]
        [--driver discard|file] [--broker memory|redis]

One Celery app and one task (``bench.add``, args ``(1, 2)``, JSON serializer), the
same for every scenario. Broker: ``memory://`` by default (kombu's real publish path
without a network; note that this transport keeps the message as a dict, so message
*headers* are never serialized), or ``redis`` (``redis://127.0.0.1:6379/15``: the
whole envelope, headers included, is JSON-encoded and sent to Redis).

- ``publish``: ``task.apply_async((1, 2))`` (``before_task_publish`` /
  ``after_task_publish`` — 1 producer span each);
- ``execute``: ``task.apply((1, 2))`` — an eager run goes through the same
  ``build_tracer`` code path as a worker and sends ``task_prerun``/``task_postrun``
  (1 consumer span each).

Scenarios: ``bare`` (no instrumentation), ``otel`` (``CeleryInstrumentor`` from
opentelemetry-instrumentation-celery, SDK ``TracerProvider`` + ``BatchSpanProcessor``
with an exporter that discards the spans), ``infratrace``
(``infratrace_celery.instrument``; ``--driver discard``, the default, discards the
spans like the OpenTelemetry exporter — the like-for-like comparison of the two
instrumentations; ``--driver file`` also encodes every span as JSON and writes it to a
file, work the OpenTelemetry side does not do at all).

Both tracers are set up once; each timed block of 250 tasks switches one
instrumentation on (untimed), runs, ends with that tracer's flush inside the timed
region (so background work is paid for), and switches it off. A round is one block of
each scenario in each mode, in an order that alternates every round, ``tasks / 250 x
rounds`` rounds in all, so drift in machine load hits all scenarios alike. The broker
queue is emptied (untimed) before every block. Reported per mode: the median over
blocks of the added cost, paired within each round (``scenario − bare`` of the same
round), as wall-clock time and as the process's CPU time (all threads; steadier on a
shared machine), and ``ratio`` = infratrace added / otel added.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import infratrace_celery
from _baseline import otel_provider  # benchmarks/ is on sys.path when run as a script
from celery import Celery
from opentelemetry.instrumentation.celery import CeleryInstrumentor

import infratrace

BROKERS = {"memory": "memory://", "redis": "redis://127.0.0.1:6379/15"}
QUEUE = "bench-celery"
BLOCK = 250

app = Celery("bench", set_as_current=False)
app.conf.update(
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    task_default_queue=QUEUE,
    task_serializer="json",
)


@app.task(name="bench.add")
def add(x: int, y: int) -> int:
    return x + y


class Scenario:
    def __init__(self, name: str, on: Callable[[], None], off: Callable[[], None], flush: Callable[[], Any]) -> None:
        self.name, self.on, self.off, self.flush = name, on, off, flush


def scenarios(tmp: Path, driver: str) -> list[Scenario]:
    provider, _ = otel_provider(max_queue_size=1 << 16)
    otel = CeleryInstrumentor()
    if driver == "file":
        config = f'[trace]\ndriver = "file"\njson = true\nbuffer = 65536\n[trace.setting]\noutput = "{tmp}/spans.jsonl"\n'
    else:
        config = '[trace]\ndriver = "discard"\nbuffer = 65536\n'
    infratrace.configure(config)

    def nothing() -> None:
        pass

    return [
        Scenario("bare", nothing, nothing, nothing),
        Scenario("otel", lambda: otel.instrument(tracer_provider=provider), otel.uninstrument, provider.force_flush),
        Scenario("infratrace", lambda: infratrace_celery.instrument(app), infratrace_celery.uninstrument,
                 infratrace.force_flush),
    ]  # fmt: skip


def purge() -> None:
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(QUEUE)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000, help="tasks per scenario and mode per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--driver", choices=("discard", "file"), default="discard")
    parser.add_argument("--broker", choices=tuple(BROKERS), default="memory")
    args = parser.parse_args(argv)
    app.conf.broker_url = BROKERS[args.broker]

    def publish() -> None:
        for _ in range(BLOCK):
            add.apply_async((1, 2))

    def execute() -> None:
        for _ in range(BLOCK):
            add.apply((1, 2))

    modes = {"publish": publish, "execute": execute}
    with tempfile.TemporaryDirectory() as tmp:
        cases = scenarios(Path(tmp), args.driver)
        with app.connection_for_write() as conn:  # declare the queue
            conn.default_channel.queue_declare(QUEUE, durable=True, auto_delete=False)
        for case in cases:  # warm up every code path once
            case.on()
            publish()
            execute()
            case.flush()
            case.off()
        purge()
        # (mode, scenario) -> [(wall µs/task, cpu µs/task)], one per round
        samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
        rounds = max(1, args.tasks // BLOCK) * args.rounds
        for r in range(rounds):
            order = cases if r % 2 == 0 else cases[::-1]
            for mode, block in modes.items():
                for case in order:
                    case.on()
                    purge()
                    gc.collect()
                    wall, cpu = time.perf_counter(), time.process_time()
                    block()
                    case.flush()
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    case.off()
                    samples.setdefault((mode, case.name), []).append((wall / BLOCK * 1e6, cpu / BLOCK * 1e6))
        purge()
        written = len((Path(tmp) / "spans.jsonl").read_text().splitlines()) if args.driver == "file" else None

    print(f"python {sys.version.split()[0]}, celery {__import__('celery').__version__}, broker {args.broker}, "
          f"infratrace driver {args.driver}, {rounds} rounds x {BLOCK} tasks per scenario and mode")  # fmt: skip
    print("µs per task: median over rounds; added = median of (scenario - bare) paired within a round")
    header = f"{'':8} {'clock':5} {'bare':>8} {'otel':>8} {'infratrace':>10} {'otel added':>11} {'ours added':>11} {'ratio':>6}"
    print(header)
    for mode in modes:
        for index, clock in enumerate(("wall", "cpu")):
            series = {c.name: [s[index] for s in samples[(mode, c.name)]] for c in cases}
            med = {name: statistics.median(values) for name, values in series.items()}
            added = {
                name: statistics.median(a - b for a, b in zip(series[name], series["bare"], strict=True))
                for name in ("otel", "infratrace")
            }
            ratio = added["infratrace"] / added["otel"] if added["otel"] > 0 else float("nan")
            print(f"{mode:8} {clock:5} {med['bare']:8.2f} {med['otel']:8.2f} {med['infratrace']:10.2f} "
                  f"{added['otel']:11.2f} {added['infratrace']:11.2f} {ratio:6.2f}")  # fmt: skip
    if written is not None:
        print(f"infratrace spans written to the file: {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
