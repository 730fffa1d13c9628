"""The ``infratrace`` command (also ``python -m infratrace``): look at the traces the
file driver wrote, without a tracing backend, and check a configuration.

  infratrace view logs/traces.jsonl                 each trace as a tree with a waterfall
  infratrace view web.jsonl worker.jsonl --status error
  infratrace tail logs/traces.jsonl                 each trace as it completes
  infratrace serve logs/                            a web page on http://127.0.0.1:8765/
  infratrace check infratrace.toml                  every error, or what the file sets up

Exit status: 0 done; 1 nothing matched, or the configuration is invalid; 2 the input
cannot be used (a missing file, a file without spans, a bad option). Errors are one
line on stderr, never a traceback. The work is done in :mod:`infratrace.viewer`; the
terminal view needs ``rich`` (``pip install 'infratrace[cli]'``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console

    from .viewer.model import Trace, TraceFilter
    from .viewer.reading import FieldMap

__all__ = ["main", "read_spans", "render_trees"]

DEFAULT_PORT = 8765
TAIL_SEED_BYTES = 8 << 20  # tail reads this much of a file's end at start, for the traces it continues

_FILTER_HELP = """filters (a trace is shown when it matches all of them):
  --trace ID            the trace id, or its first characters
  --name GLOB           one of its spans has a matching name: 'http:*', '*checkout*'
  --status error|ok     one of its spans ended in error (error) or none did (ok)
  --min-duration D      it lasted at least D (first start to last end): 50ms, 1.5s
  --since WHEN          it started at most that long ago (10m, 2h, 1d) or after a time
                        (2026-11-27T09:25, local time unless it ends in Z or an offset)
"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="infratrace",
        description="Look at traces written by infratrace's file driver, and check configurations.",
        epilog="examples:\n" + __doc__.split("\n\n")[1] if __doc__ else None,
        formatter_class=_Formatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{view,tail,serve,check,stats}")

    view = sub.add_parser(
        "view",
        aliases=["tree"],
        help="show traces as trees with waterfall bars",
        formatter_class=_Formatter,
        description="Show each trace of JSON-lines span files as a tree, one row per span with its service, process,\n"
        "duration and a waterfall bar (start offset and duration on the trace's time line). Spans of one\n"
        "trace from several files (a web app's and its Celery worker's) make one tree. Errors are marked\n"
        "✗, the spans with the most time of their own ▲. `tree` is the same command.",
        epilog=_FILTER_HELP
        + """
examples:
  infratrace view demo-output/traces.jsonl
  infratrace view logs/ --status error --since 1h
  infratrace view logs/traces.jsonl --rotated --name 'queue:*' --min-duration 100ms --limit 5
  infratrace view web.jsonl worker.jsonl.gz --trace 4bf92f35
  kubectl logs web-1 | infratrace view -
  infratrace view traces.jsonl --config infratrace.toml          # written with `fields` renames
  infratrace view logs/ --since 10m --html traces.html           # one self-contained page
""",
    )
    _inputs(view, "FILE", "JSON-lines span files (.gz too), directories of them, or - for stdin")
    _reading_options(view, rotated=True)
    _filter_options(view)
    view.add_argument("--limit", type=int, default=0, metavar="N", help="only the N newest matching traces")
    _display_options(view)
    view.add_argument("--html", metavar="OUT.html", help="write the browser page, with these traces, as one file instead")
    view.set_defaults(run=_view)

    tail = sub.add_parser(
        "tail",
        help="print each trace as it completes, following files as they grow",
        formatter_class=_Formatter,
        description="Follow span files as they grow (and across their rotations) and print each trace when its local\n"
        "root has ended: the span where it entered a process. A trace that continues in another process\n"
        "(a request's Celery task) is printed again, whole, when that part ends. Ctrl+C stops.",
        epilog=_FILTER_HELP
        + """
examples:
  infratrace tail logs/traces.jsonl
  infratrace tail web.jsonl worker.jsonl --status error
  infratrace tail logs/traces.jsonl -n 0 --name 'http:POST *'
""",
    )
    _inputs(tail, "FILE", "span files to follow")
    _reading_options(tail, rotated=False)
    _filter_options(tail)
    tail.add_argument(
        "-n",
        "--last",
        type=int,
        default=5,
        metavar="N",
        help="first print the N last traces already in the files (default 5)",
    )
    tail.add_argument("--interval", type=_seconds, default=0.5, metavar="D", help="how often the files are read (default 0.5s)")
    tail.add_argument(
        "--wait",
        type=_seconds,
        default=5.0,
        metavar="D",
        help="print spans whose local root never came after this long without news of their trace (default 5s)",
    )
    _display_options(tail)
    tail.set_defaults(run=_tail)

    serve = sub.add_parser(
        "serve",
        help="a local web page of the traces: search, waterfall, span details",
        formatter_class=_Formatter,
        description="Serve a web page of the traces on 127.0.0.1: a searchable list of traces, and for the selected one\n"
        "a zoomable waterfall with each span's attributes, resource, status and events (stack traces).\n"
        "New spans appear as the files grow. Every asset is in the package: nothing is fetched from the\n"
        "network. Ctrl+C stops.",
        epilog="""examples:
  infratrace serve demo-output/traces.jsonl
  infratrace serve logs/ --port 9000
  infratrace serve web.jsonl worker.jsonl --port 0        # any free port
""",
    )
    _inputs(serve, "FILE_OR_DIR", "span files or directories (a new file in one is read too)")
    _reading_options(serve, rotated=True)
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"the port on 127.0.0.1 (default {DEFAULT_PORT}; 0: any free one)"
    )
    serve.add_argument("--interval", type=_seconds, default=1.0, metavar="D", help="how often the files are read (default 1s)")
    serve.set_defaults(run=_serve)

    check = sub.add_parser(
        "check",
        help="list every error of a configuration, or show what it sets up",
        formatter_class=_Formatter,
        description="Check a TOML configuration as configure() reads it: every error, each with the file, the key,\n"
        "the value and what is allowed; for a valid file, each connection with its driver, its settings\n"
        "(defaults filled in, secrets masked), its sampling rules in the order they apply and its field\n"
        "mapping. It builds no driver: no file or folder is created, no connection opened.",
        epilog="""examples:
  infratrace check infratrace.toml
  infratrace check                          # what configure() reads: $INFRATRACE_CONFIG, ./infratrace.toml or the defaults
  infratrace check infratrace.toml --test-write
  infratrace check pyproject-like.toml --app-tables   # a file that also holds the application's own tables
""",
    )
    check.add_argument(
        "config", nargs="?", metavar="CONFIG", help="a TOML file (default: $INFRATRACE_CONFIG, else ./infratrace.toml)"
    )
    check.add_argument(
        "--app-tables",
        action="store_true",
        help="the file is shared with the application: its other top-level tables are notes, not errors",
    )
    check.add_argument(
        "--test-write",
        action="store_true",
        help="also build each connection and send one test span through it (this writes: files, requests)",
    )
    check.set_defaults(run=_check)

    stats = sub.add_parser(
        "stats",
        help="count spans per name and status",
        formatter_class=_Formatter,
        epilog="examples:\n  infratrace stats logs/traces.jsonl\n  infratrace stats logs/ --rotated\n",
    )
    _inputs(stats, "FILE", "span files, directories, or - for stdin")
    _reading_options(stats, rotated=True)
    stats.set_defaults(run=_stats)
    return parser


def _inputs(parser: argparse.ArgumentParser, metavar: str, help: str) -> None:
    parser.add_argument("inputs", nargs="+", metavar=metavar, help=help)


def _reading_options(parser: argparse.ArgumentParser, *, rotated: bool) -> None:
    parser.add_argument("--config", metavar="TOML", help="the configuration that wrote the files, to read `fields` renames")
    parser.add_argument("--connection", metavar="NAME", help="with --config: the connection that wrote the files")
    if rotated:
        parser.add_argument(
            "--rotated", action="store_true", help="also read each file's rotated parts beside it (name.<time>.jsonl[.gz])"
        )


def _filter_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters")
    group.add_argument("--trace", metavar="ID", default="", help="the trace id or its first characters")
    group.add_argument("--name", metavar="GLOB", default="", help="a span name pattern one of its spans matches")
    group.add_argument("--status", choices=("error", "ok"), default="", help="error: one of its spans failed; ok: none did")
    group.add_argument("--min-duration", metavar="D", default="", help="lasted at least this long: 50ms, 1.5s")
    group.add_argument("--since", metavar="WHEN", default="", help="started within 10m, 2h… or after a time")


def _display_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-d", "--details", action="store_true", help="show each span's attributes and events")
    parser.add_argument("--width", type=int, default=0, help="the output's width in columns (default: the terminal's)")


def _seconds(text: str) -> float:
    from ._units import parse_duration

    try:
        value = parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a duration such as 500ms, 2s or 1m") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a duration above zero")
    return value


# -- commands -------------------------------------------------------------------------------------


def _fields(args: argparse.Namespace) -> FieldMap:
    from .viewer import ViewerError
    from .viewer.reading import FieldMap

    if args.connection and not args.config:
        raise ViewerError("--connection needs --config")
    return FieldMap.from_config(args.config, args.connection or "") if args.config else FieldMap()


def _filter(args: argparse.Namespace) -> TraceFilter:
    from .viewer.model import TraceFilter, parse_min_duration, parse_since

    return TraceFilter(
        trace_id=args.trace.strip(),
        name=args.name,
        status=args.status,
        min_duration_ms=parse_min_duration(args.min_duration) if args.min_duration else 0.0,
        since_ns=parse_since(args.since) if args.since else 0,
    )


def _console(args: argparse.Namespace) -> Console:
    from .viewer import ViewerError

    try:
        from rich.console import Console
    except ImportError:
        raise ViewerError("the terminal view needs the package 'rich': pip install 'infratrace[cli]'") from None
    return Console(width=args.width or None, highlight=False, soft_wrap=False)


def _view(args: argparse.Namespace) -> int:
    from .viewer import ViewerError
    from .viewer.model import build_traces, select
    from .viewer.reading import read_spans as read

    where = _filter(args)
    console = None if args.html else _console(args)  # without rich, fail before reading
    spans, notes = read(args.inputs, _fields(args), rotated=args.rotated)
    for note in notes:
        print(f"infratrace {args.command}: note: {note}", file=sys.stderr)
    sources = _names(args.inputs)
    if not spans:
        raise ViewerError(f"no spans in {sources}", 1)
    traces = build_traces(spans)
    shown = select(traces, where, args.limit)
    if not shown:
        raise ViewerError(f"no trace matches {where.describe()} ({_count(len(traces), 'trace')} in {sources})", 1)
    if console is None:
        from .viewer.web import export_html

        export_html(shown, args.html, [str(i) for i in args.inputs])
        print(f"{args.html}: {_count(len(shown), 'trace')}, {sum(len(t.spans) for t in shown)} spans")
        return 0
    from .viewer.terminal import render_traces

    render_traces(shown, console, details=args.details)
    console.print(
        f"{_count(len(shown), 'trace')} of {len(traces)}, {sum(len(t.spans) for t in shown)} spans, from {sources}",
        style="dim",
        soft_wrap=True,
    )
    return 0


def _tail(args: argparse.Namespace) -> int:
    from .viewer.reading import Watch
    from .viewer.tail import Tailer
    from .viewer.terminal import bar_width_for, render_trace

    where = _filter(args)
    console = _console(args)
    watch = Watch(args.inputs, _fields(args), tail_bytes=TAIL_SEED_BYTES)

    def emit(trace: Trace, title: str) -> None:
        render_trace(trace, console, details=args.details, bar_width=bar_width_for(console), title=title)
        console.print()
        console.file.flush()

    tailer = Tailer(watch, emit, where, wait=args.wait)
    try:
        tailer.start(max(0, args.last))
        print(f"infratrace tail: following {_names(args.inputs)} (Ctrl+C to stop)", file=sys.stderr, flush=True)
        while True:
            time.sleep(args.interval)
            tailer.step()
    except KeyboardInterrupt:  # how tail is stopped
        return 0
    finally:
        watch.close()


def _serve(args: argparse.Namespace) -> int:
    from .viewer.reading import Watch
    from .viewer.web import ViewerServer

    watch = Watch(args.inputs, _fields(args), rotated=args.rotated)
    try:
        server = ViewerServer(watch, args.port, args.interval)
    except BaseException:
        watch.close()
        raise
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    try:
        traces = len(server.store.summaries()[1])
        print(
            f"infratrace serve: {server.url} — {_count(traces, 'trace')} from {_names(args.inputs)}, "
            "read again as they grow (Ctrl+C to stop)",
            flush=True,
        )
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:  # how serve is stopped
        return 0
    finally:
        server.stop()
    return 0


def _check(args: argparse.Namespace) -> int:
    from .viewer.checking import run_check

    return run_check(args.config, sys.stdout, sys.stderr, write=args.test_write, app_tables=args.app_tables)


def _stats(args: argparse.Namespace) -> int:
    from .viewer import ViewerError
    from .viewer.reading import read_spans as read

    spans, notes = read(args.inputs, _fields(args), rotated=args.rotated)
    for note in notes:
        print(f"infratrace stats: note: {note}", file=sys.stderr)
    if not spans:
        raise ViewerError(f"no spans in {_names(args.inputs)}", 1)
    counts = Counter((span.name, span.status) for span in spans)
    for (name, status), count in sorted(counts.items()):
        print(f"{count:8d}  {status:5s}  {name}")
    return 0


def _names(inputs: Sequence[str]) -> str:
    names = ["stdin" if item == "-" else item for item in inputs]
    return ", ".join(names) if len(names) <= 3 else f"{', '.join(names[:3])} and {len(names) - 3} more"


def _count(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .viewer import ViewerError

    try:
        status: int = args.run(args)
        return status
    except ViewerError as exc:
        print(f"infratrace {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (| head): nothing more to say, and nothing at exit
        # either (flushing the closed stdout would fail again).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


# -- for scripts ----------------------------------------------------------------------------------


def read_spans(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The span records (as dicts) of JSON-lines files written with the stable schema;
    lines that are not span records are skipped."""
    import msgspec

    spans: list[dict[str, Any]] = []
    for path in paths:
        with open(path, "rb") as handle:
            for line in handle:
                try:
                    record = msgspec.json.decode(line)
                except msgspec.DecodeError:
                    continue
                if isinstance(record, dict) and "trace_id" in record and "span_id" in record:
                    spans.append(record)
    return spans


def render_trees(spans: Sequence[dict[str, Any]], out: TextIO, trace_id: str | None = None) -> int:
    """Write the traces of span records as the terminal view draws them (``rich``);
    returns the number of traces shown."""
    from rich.console import Console

    from .viewer.model import TraceFilter, build_traces, select
    from .viewer.reading import FieldMap, record_to_span
    from .viewer.terminal import render_traces

    fields = FieldMap()
    records = (record_to_span(record, fields) for record in spans)
    traces = select(build_traces(span for span in records if span is not None), TraceFilter(trace_id=trace_id or ""))
    render_traces(traces, Console(file=out, highlight=False))
    return len(traces)
