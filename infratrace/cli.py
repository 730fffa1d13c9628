"""The ``infratrace`` command: read JSON-lines span files back as trace trees.

infratrace tree demo-output/traces.jsonl            # every trace, as a tree
infratrace tree traces.jsonl --trace <trace_id>     # one trace
infratrace stats traces.jsonl                        # spans per name / status
infratrace check infratrace.toml                     # validate a configuration
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

__all__ = ["build_trees", "main", "read_spans", "render_trees"]


def read_spans(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Spans from JSON-lines files written with the stable schema (bad lines skipped)."""
    spans: list[dict[str, Any]] = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and "trace_id" in record and "span_id" in record:
                    spans.append(record)
    return spans


def build_trees(spans: Sequence[dict[str, Any]]) -> dict[str, list[tuple[dict[str, Any], list[Any]]]]:
    """trace_id → list of root nodes ``(span, children)``, children in start order. A
    span whose parent is not in the file is shown as a root of its trace."""
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        by_trace[span["trace_id"]].append(span)
    trees: dict[str, list[tuple[dict[str, Any], list[Any]]]] = {}
    for trace_id, members in by_trace.items():
        members.sort(key=lambda s: s.get("start_time_unix_nano", 0))
        nodes: dict[str, tuple[dict[str, Any], list[Any]]] = {s["span_id"]: (s, []) for s in members}
        roots: list[tuple[dict[str, Any], list[Any]]] = []
        for span in members:
            parent = nodes.get(span.get("parent_span_id") or "")
            (parent[1] if parent else roots).append(nodes[span["span_id"]])
        trees[trace_id] = roots
    return trees


def _line(span: dict[str, Any]) -> str:
    status = span.get("status", "ok")
    mark = "ERROR " if status == "error" else ""
    duration = span.get("duration_ms", 0.0)
    extra = ""
    attrs = span.get("attributes") or {}
    code = attrs.get("http.response.status_code")
    if code is not None:
        extra += f" {code}"
    if status == "error" and span.get("status_message"):
        extra += f" — {span['status_message']}"
    pid = (span.get("resource") or {}).get("process.pid")
    where = f" [{span.get('service_name', '')}" + (f" pid {pid}]" if pid else "]")
    return f"{mark}{span.get('name')} ({span.get('kind')}, {duration:.3f} ms){extra}{where}"


def render_trees(spans: Sequence[dict[str, Any]], out: TextIO, trace_id: str | None = None) -> int:
    """Write each trace as an indented tree; returns the number of traces shown."""
    trees = build_trees(spans)
    order = sorted(trees, key=lambda t: min(s[0].get("start_time_unix_nano", 0) for s in trees[t]))
    shown = 0
    for tid in order:
        if trace_id and tid != trace_id:
            continue
        shown += 1
        out.write(f"trace {tid}\n")

        def walk(node: tuple[dict[str, Any], list[Any]], prefix: str, last: bool) -> None:
            span, children = node
            out.write(f"{prefix}{'└─ ' if last else '├─ '}{_line(span)}\n")
            for index, child in enumerate(children):
                walk(child, prefix + ("   " if last else "│  "), index == len(children) - 1)

        roots = trees[tid]
        for index, root in enumerate(roots):
            walk(root, "", index == len(roots) - 1)
        out.write("\n")
    return shown


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="infratrace", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tree = sub.add_parser("tree", help="show JSON-lines span files as trace trees")
    tree.add_argument("files", nargs="+")
    tree.add_argument("--trace", help="only this trace id")
    stats = sub.add_parser("stats", help="count spans per name and status")
    stats.add_argument("files", nargs="+")
    check = sub.add_parser("check", help="validate a TOML configuration")
    check.add_argument("config")
    args = parser.parse_args(argv)

    if args.command == "check":
        from ._config import load_config
        from ._errors import ConfigError

        # load_config() checks what configure() checks, driver settings included, without
        # building the drivers: a check creates no directory and opens no connection.
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            print(f"invalid: {exc}", file=sys.stderr)
            return 1
        names = ", ".join(f"{c.name} ({c.driver})" for c in config.connections)
        print(f"ok: {len(config.connections)} connection(s): {names}")
        return 0

    spans = read_spans(args.files)
    if args.command == "stats":
        counts = Counter((s.get("name", ""), s.get("status", "")) for s in spans)
        for (name, status), count in sorted(counts.items()):
            print(f"{count:8d}  {status:5s}  {name}")
        return 0
    shown = render_trees(spans, sys.stdout, args.trace)
    return 0 if shown or not args.trace else 1
