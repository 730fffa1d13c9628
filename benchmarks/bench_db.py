"""What a database query costs with infratrace's ``db:`` spans vs OpenTelemetry's
instrumentation of the same queries, on SQLite in memory (fast: the tracer's cost shows)
and on PostgreSQL at 127.0.0.1:5432 (database ``test``, user ``postgres``; skipped
when unreachable), for SQLAlchemy and for Django.

    .venv/bin/python benchmarks/bench_db.py [--queries 2000] [--rounds 21]
        [--only sqlalchemy-sqlite,sqlalchemy-pg,django-sqlite,django-pg] [--cpu] [--jobs 2]

Targets and scenarios (three per target, in one process, interleaved round by round):

- ``sqlalchemy-*``: ``conn.execute(select(...).where(id == :id)).fetchall()`` on an open
  connection, each scenario its own engine: ``bare`` (no listener),
  ``otel`` (``SQLAlchemyInstrumentor().instrument(engine=..., skip_dep_check=True)``:
  it declares ``sqlalchemy < 2.1`` and refuses 2.1 otherwise), ``infratrace``
  (``infratrace_sqlalchemy.instrument(engine)``);
- ``django-*``: ``with connection.cursor() as c: c.execute("SELECT ... WHERE id = %s");
  c.fetchall()`` (the path the ORM's queries take through ``execute_wrapper``), each
  scenario its own database alias: ``bare``, ``otel`` (the connection made while
  OpenTelemetry's ``dbapi.wrap_connect`` on ``sqlite3`` / ``PsycopgInstrumentor`` were
  on), ``infratrace`` (``infratrace_django`` in ``INSTALLED_APPS``, its wrapper on that
  alias only).

The queries run in chunks of 100 under a parent span of the scenario's tracer (none for
``bare``): a query's span needs a parent to be recorded (infratrace records no query
outside a trace). "added per query" = (scenario − bare) / queries, so a hundredth of
the parent span is in it. infratrace writes JSON lines to a file (the ``file``
driver); OpenTelemetry's SDK runs ``BatchSpanProcessor`` with an exporter that counts
and discards. Each measured batch ends with the tracer's flush, so background work is
in the figure; the run checks that every span was written or exported.

With ``valgrind`` installed (and without ``--cpu``) the figures are CPU instructions
(callgrind, all threads, as ``bench_instructions.py``: a run of set-up + warm-up and one
of set-up + warm-up + N queries per scenario, in child processes; the difference / N).
Otherwise CPU time (``time.process_time``, all threads), median over interleaved
rounds and the paired per-round ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from _baseline import otel_provider, paired_ratio  # noqa: E402

TARGETS = ("sqlalchemy-sqlite", "sqlalchemy-pg", "django-sqlite", "django-pg")
SCENARIOS = ("bare", "otel", "infratrace")
CHUNK = 100  # queries per parent span
WARMUP = 300
PG_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"
SCHEMA = f"bench_db_{uuid.uuid4().hex[:10]}"
ROWS = 10


def postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
        import psycopg

        with psycopg.connect(PG_DSN, connect_timeout=3):
            return True
    except Exception:
        return False


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{SCHEMA}"')
    try:
        yield SCHEMA
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{SCHEMA}" CASCADE')


class Scenario:
    """One way of running the queries: ``run(n)`` runs ``n`` of them (chunks of
    :data:`CHUNK` under a parent span) and flushes the tracer."""

    def __init__(self, name: str, query: Callable[[int], None], parent: Callable[[], Any], flush: Callable[[], Any]) -> None:
        self.name = name
        self.query = query
        self.parent = parent
        self.flush = flush

    def run(self, n: int) -> None:
        query, parent = self.query, self.parent
        for start in range(0, n, CHUNK):
            with parent():
                for number in range(start, min(n, start + CHUNK)):
                    query(number % ROWS + 1)
        self.flush()


class Built:
    """A target's three scenarios, and how to check that nothing was lost."""

    def __init__(self, scenarios: dict[str, Scenario], exported: Callable[[], int], close: Callable[[], None]) -> None:
        self.scenarios = scenarios
        self.exported = exported
        self.close = close


def tracers(directory: Path) -> tuple[Any, Any, Callable[[], int]]:
    """infratrace writing JSON lines to ``directory/spans.jsonl``; OpenTelemetry's
    provider (its tracer) and its exporter's count."""
    import infratrace

    infratrace.configure(f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{directory / "spans.jsonl"}"\n')
    provider, exporter = otel_provider()

    def exported() -> int:
        """Spans exported since the last call with ``reset`` (set-up queries made on
        OpenTelemetry's connection, e.g. Django's session settings, are not counted)."""
        provider.force_flush()
        return exporter.count - offset[0]

    offset = [0]
    exported.reset = lambda: offset.__setitem__(0, offset[0] + exported())  # type: ignore[attr-defined]
    return provider, provider.get_tracer("bench"), exported


def parents(otel_tracer: Any) -> dict[str, Callable[[], Any]]:
    import infratrace

    return {
        "bare": contextlib.nullcontext,
        "otel": lambda: otel_tracer.start_as_current_span("service:parent"),
        "infratrace": lambda: infratrace.begin("service:parent"),
    }


def build_sqlalchemy(database: str, directory: Path, stack: contextlib.ExitStack) -> Built:
    import infratrace_sqlalchemy
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, create_engine, insert, select

    import infratrace

    provider, otel_tracer, exported = tracers(directory)
    metadata = MetaData()
    users = Table("bench_users", metadata, Column("id", Integer, primary_key=True), Column("email", String(100)))
    statement = select(users.c.email).where(users.c.id == bindparam("id"))
    scenarios: dict[str, Scenario] = {}
    # OpenTelemetry's instrument() also wraps create_engine() and Engine.connect() for
    # good: its engine is made last, so the other two stay free of it.
    for name in ("bare", "infratrace", "otel"):
        parent = parents(otel_tracer)[name]
        if database == "sqlite":
            engine = create_engine("sqlite://")
        else:
            engine = create_engine(
                "postgresql+psycopg://postgres@127.0.0.1:5432/test", connect_args={"options": f"-c search_path={SCHEMA}"}
            )
        conn = engine.connect()
        stack.callback(engine.dispose)
        stack.callback(conn.close)
        if name == "bare" or database == "sqlite":  # PostgreSQL: one table for the three engines
            metadata.create_all(conn)
            conn.execute(insert(users), [{"id": number, "email": f"{number}@example.com"} for number in range(1, ROWS + 1)])
            conn.commit()
        if name == "otel":
            # It declares sqlalchemy < 2.1 and would refuse 2.1 without skip_dep_check.
            SQLAlchemyInstrumentor().instrument(engine=engine, tracer_provider=provider, skip_dep_check=True)
        elif name == "infratrace":
            infratrace_sqlalchemy.instrument(engine)

        def query(key: int, conn: Any = conn) -> None:
            conn.execute(statement, {"id": key}).fetchall()

        flush = {"bare": lambda: None, "otel": provider.force_flush, "infratrace": infratrace.force_flush}[name]
        scenarios[name] = Scenario(name, query, parent, flush)
    stack.callback(provider.shutdown)
    exported.reset()  # type: ignore[attr-defined]
    return Built({name: scenarios[name] for name in SCENARIOS}, exported, stack.close)


def build_django(database: str, directory: Path, stack: contextlib.ExitStack) -> Built:
    import sqlite3

    import django
    from django.conf import settings

    import infratrace

    provider, otel_tracer, exported = tracers(directory)
    if database == "sqlite":
        config: dict[str, Any] = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    else:
        config = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "test",
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": "5432",
            "OPTIONS": {"options": f"-c search_path={SCHEMA}"},
        }
    aliases = {"bare": "default", "otel": "otel", "infratrace": "infratrace"}
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench",
        INSTALLED_APPS=["infratrace_django"],
        INFRATRACE_DJANGO={"database_spans": True, "signals": False},
        DATABASES={alias: dict(config) for alias in aliases.values()},
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup()
    from django.db import connections
    from infratrace_django._db import uninstrument_connection
    from opentelemetry.instrumentation import dbapi
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    for name, alias in aliases.items():
        connection = connections[alias]
        if name == "otel":  # a connection made while OpenTelemetry's connect wrapper is on
            if database == "sqlite":
                dbapi.wrap_connect("bench", sqlite3.dbapi2, "connect", "sqlite", tracer_provider=provider)
                connection.ensure_connection()
                dbapi.unwrap_connect(sqlite3.dbapi2, "connect")
            else:
                PsycopgInstrumentor().instrument(tracer_provider=provider)
                connection.ensure_connection()
                PsycopgInstrumentor().uninstrument()
        connection.ensure_connection()
        if name != "infratrace":
            uninstrument_connection(connection)
        stack.callback(connection.close)
        if database == "sqlite" or name == "bare":
            raw = connection.connection
            raw.execute("CREATE TABLE bench_users (id integer PRIMARY KEY, email varchar(100))")
            for number in range(1, ROWS + 1):
                raw.execute(
                    "INSERT INTO bench_users (id, email) VALUES (%s, %s)".replace("%s", "?" if database == "sqlite" else "%s"),
                    (number, f"{number}@example.com"),
                )
            raw.commit()
    scenarios: dict[str, Scenario] = {}
    for name, parent in parents(otel_tracer).items():
        connection = connections[aliases[name]]

        def query(key: int, connection: Any = connection) -> None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT email FROM bench_users WHERE id = %s", [key])
                cursor.fetchall()

        flush = {"bare": lambda: None, "otel": provider.force_flush, "infratrace": infratrace.force_flush}[name]
        scenarios[name] = Scenario(name, query, parent, flush)
    stack.callback(provider.shutdown)
    exported.reset()  # type: ignore[attr-defined]
    return Built(scenarios, exported, stack.close)


def build(target: str, directory: Path, stack: contextlib.ExitStack) -> Built:
    framework, database = target.split("-")
    if database == "pg":
        stack.enter_context(pg_schema())
    return (build_sqlalchemy if framework == "sqlalchemy" else build_django)(database, directory, stack)


def check(directory: Path, built: Built, scenario: str, queries: int) -> dict[str, int]:
    """Every span of the scenario written (infratrace) or exported (OpenTelemetry)."""
    import infratrace

    spans = queries + -(-queries // CHUNK)  # the queries and their parents
    infratrace.force_flush(60)
    stats = infratrace.stats()
    written = int(stats["written_count"])
    lost = {key: stats[key] for key in ("dropped_count", "sampled_out_count", "queue_len") if stats[key]}
    exported = built.exported()
    expected = {"bare": (0, 0), "otel": (0, spans), "infratrace": (spans, 0)}[scenario]
    if lost or (written, exported) != expected:
        raise SystemExit(f"{scenario}: infratrace wrote {written}, OpenTelemetry exported {exported}, expected {expected} {lost}")
    infratrace.shutdown()
    lines = sum(1 for _ in (directory / "spans.jsonl").open()) if written else 0
    if lines != written:
        raise SystemExit(f"{scenario}: {lines} lines in the file, {written} spans written")
    return {"infratrace": written, "otel": exported}


# -- one child process ----------------------------------------------------------------------


def worker(target: str, scenario: str, counts: tuple[int, int], directory: Path) -> dict[str, Any]:
    """The instruction-count child: set up the target, run the warm-up and then
    ``counts[1]`` queries of one scenario."""
    with contextlib.ExitStack() as stack:
        built = build(target, directory, stack)
        chosen = built.scenarios[scenario]
        for count in counts:
            if count:
                chosen.run(count)
        figures = check(directory, built, scenario, sum(counts))
    figures["gc"] = [generation["collections"] for generation in gc.get_stats()]
    return figures


def cpu_worker(target: str, queries: int, rounds: int, directory: Path) -> dict[str, Any]:
    """The CPU-time child: the three scenarios of a target, interleaved round by round."""
    samples: dict[str, list[float]] = {name: [] for name in SCENARIOS}
    with contextlib.ExitStack() as stack:
        built = build(target, directory, stack)
        for scenario in built.scenarios.values():
            scenario.run(WARMUP)
        for _ in range(rounds):
            for name, scenario in built.scenarios.items():
                gc.collect()
                start = time.process_time()
                scenario.run(queries)
                samples[name].append((time.process_time() - start) / queries * 1e6)
        import infratrace

        infratrace.shutdown()
    return {"samples": samples}


# -- the parent -----------------------------------------------------------------------------


def child(argv: list[str], valgrind: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-db-") as tmp:
        directory = Path(tmp)
        command = [sys.executable, str(Path(__file__).resolve()), *argv, "--dir", str(directory)]
        if valgrind is not None:
            out = directory / "callgrind.out"
            command = ["valgrind", "--tool=callgrind", "--separate-threads=yes", f"--callgrind-out-file={out}", *command]
        env = dict(os.environ, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
        result = directory / "result.json"
        if done.returncode or not result.exists():
            raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr[-4000:]}")
        figures: dict[str, Any] = json.loads(result.read_text())
        if valgrind is not None:
            from bench_instructions import callgrind_totals

            figures["instructions"] = sum(callgrind_totals(directory / "callgrind.out"))
        return figures


def instructions(targets: list[str], args: argparse.Namespace) -> list[str]:
    jobs = []
    for target in targets:
        for scenario in SCENARIOS:
            for counts in ((WARMUP, args.queries), (WARMUP, 0)):
                jobs.append((target, scenario, counts))

    def run(job: tuple[str, str, tuple[int, int]]) -> dict[str, Any]:
        target, scenario, counts = job
        return child(["--worker", target, scenario, "--counts", f"{counts[0]},{counts[1]}"], Path("valgrind"))

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run, jobs))
    lines = [
        "| target | scenario | instructions/query | added vs bare | added / OTel added |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    per: dict[tuple[str, str], float] = {}
    for index in range(0, len(jobs), 2):
        target, scenario, _ = jobs[index]
        per[(target, scenario)] = (results[index]["instructions"] - results[index + 1]["instructions"]) / args.queries
    for target in targets:
        bare = per[(target, "bare")]
        otel_added = per[(target, "otel")] - bare
        for scenario in SCENARIOS:
            added = per[(target, scenario)] - bare
            ratio = f"{added / otel_added:.3f}" if scenario == "infratrace" and otel_added > 0 else ""
            cells = [target, scenario, f"{per[(target, scenario)]:,.0f}", f"{added:+,.0f}" if scenario != "bare" else "", ratio]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def cpu_times(targets: list[str], args: argparse.Namespace) -> list[str]:
    lines = [
        "| target | scenario | CPU µs/query (median) | added vs bare | added / OTel added (paired, quartiles) |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for target in targets:
        samples = child(["--cpu-worker", target, "--queries", str(args.queries), "--rounds", str(args.rounds)], None)["samples"]
        bare = statistics.median(samples["bare"])
        for scenario in SCENARIOS:
            value = statistics.median(samples[scenario])
            ratio = paired_ratio(samples["bare"], samples["otel"], samples["infratrace"]) if scenario == "infratrace" else ""
            lines.append(f"| {target} | {scenario} | {value:.2f} | {value - bare:+.2f} | {ratio} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=2000, help="measured queries per scenario (a multiple of 100)")
    parser.add_argument("--rounds", type=int, default=21, help="interleaved rounds (CPU time)")
    parser.add_argument("--only", default=",".join(TARGETS), help="comma-separated targets: " + ",".join(TARGETS))
    parser.add_argument("--cpu", action="store_true", help="CPU time even when valgrind is installed")
    parser.add_argument("--jobs", type=int, default=2, help="valgrind processes at a time")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--cpu-worker", help=argparse.SUPPRESS)
    parser.add_argument("--counts", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        warmup, n = (int(value) for value in args.counts.split(","))
        figures = worker(args.worker[0], args.worker[1], (warmup, n), args.dir)
        (args.dir / "result.json").write_text(json.dumps(figures))
        return 0
    if args.cpu_worker:
        figures = cpu_worker(args.cpu_worker, args.queries, args.rounds, args.dir)
        (args.dir / "result.json").write_text(json.dumps(figures))
        return 0
    targets = [target.strip() for target in args.only.split(",") if target.strip()]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; known: {', '.join(TARGETS)}")
    if not postgres_reachable():
        skipped = [target for target in targets if target.endswith("-pg")]
        if skipped:
            print(f"PostgreSQL unreachable at 127.0.0.1:5432: skipping {', '.join(skipped)}", file=sys.stderr)
        targets = [target for target in targets if not target.endswith("-pg")]
    from importlib.metadata import version

    versions = ", ".join(
        f"{name} {version(name)}"
        for name in ("sqlalchemy", "django", "psycopg", "opentelemetry-sdk", "opentelemetry-instrumentation-sqlalchemy")
    )
    started = time.perf_counter()
    use_valgrind = shutil.which("valgrind") is not None and not args.cpu
    for target in targets:  # every scenario once, natively and briefly: fails fast on errors
        for scenario in SCENARIOS:
            child(["--worker", target, scenario, "--counts", "100,100"], None)
    print(f"Python {sys.version.split()[0]}, {versions}; {args.queries} measured queries per scenario, {CHUNK} per parent span")
    print()
    if use_valgrind:
        print(f"CPU instructions per query (valgrind --tool=callgrind, all threads; after {WARMUP} warm-up queries):")
        print()
        lines = instructions(targets, args)
    else:
        print(f"CPU time per query (process_time, all threads), {args.rounds} interleaved rounds:")
        print()
        lines = cpu_times(targets, args)
    print("\n".join(lines))
    print()
    print(f"took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
