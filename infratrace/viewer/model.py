"""Spans read back from files, grouped into traces: what every view shows.

A :class:`Trace` is built from the spans of one trace id, whatever file and process
they came from (a web request's spans in the web app's file, its Celery task's in the
worker's): each span hangs under its parent when the parent was read, else it is shown
as a root of its own, marked as an orphan (its parent is in a file not read, or was
not sampled). Times are Unix nanoseconds, as the files hold them; the bars of a
waterfall are placed on the trace's extent, from its first start to its last end.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from .._units import parse_duration
from . import ViewerError

__all__ = [
    "SLOW_MARKS",
    "Span",
    "Trace",
    "TraceFilter",
    "bar_cells",
    "build_traces",
    "format_ms",
    "local_time",
    "parse_min_duration",
    "parse_since",
    "select",
]

# The spans with the most time of their own (duration minus their children's) are
# marked as the slow ones: at most this many per trace, each holding at least
# SLOW_SHARE of the trace's extent.
SLOW_MARKS = 3
SLOW_SHARE = 0.05
ENTRY_KINDS = ("server", "consumer")


@dataclass(eq=False)
class Span:
    """One span as read from a line. ``origin`` is ``file:line``."""

    trace_id: str
    span_id: str
    parent_id: str = ""
    name: str = ""
    kind: str = "internal"
    service: str = ""
    status: str = "ok"
    status_code: int = 0
    status_message: str = ""
    start_ns: int = 0
    end_ns: int = 0
    duration_ms: float = 0.0
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    origin: str = ""
    # Set when its trace is built:
    children: list[Span] = field(default_factory=list, repr=False)
    depth: int = 0
    orphan: bool = False  # it has a parent, but that parent was not read
    self_ms: float = 0.0  # its duration minus the time covered by its children
    slow: bool = False  # one of its trace's SLOW_MARKS spans with the most self time

    @property
    def error(self) -> bool:
        return self.status == "error"

    @property
    def pid(self) -> int | None:
        pid = self.resource.get("process.pid")
        return pid if isinstance(pid, int) and not isinstance(pid, bool) else None

    @property
    def process(self) -> tuple[str, str, int | None]:
        """Where it ran: node, service and pid of the resource."""
        return (str(self.resource.get("node", "")), str(self.resource.get("service.name", "")), self.pid)

    @property
    def http_status(self) -> int | None:
        code = self.attributes.get("http.response.status_code")
        return code if isinstance(code, int) and not isinstance(code, bool) else None

    @property
    def entry(self) -> bool:
        """Where a trace enters a process: a span without a parent, or a server or
        consumer span (its parent is in the calling process)."""
        return not self.parent_id or self.kind in ENTRY_KINDS


class Trace:
    """The spans of one trace id as a tree, children in start order."""

    def __init__(self, trace_id: str, spans: Iterable[Span]) -> None:
        self.trace_id = trace_id
        self.spans: list[Span] = sorted(spans, key=lambda s: (s.start_ns, s.end_ns, s.span_id))
        by_id = {span.span_id: span for span in self.spans}
        self.roots: list[Span] = []
        for span in self.spans:
            span.children = []
        for span in self.spans:
            parent = by_id.get(span.parent_id) if span.parent_id and span.parent_id != span.span_id else None
            if parent is not None and not _is_ancestor(span, parent, by_id):
                parent.children.append(span)
                span.orphan = False
            else:
                span.orphan = bool(span.parent_id)
                self.roots.append(span)
        # The true root (no parent) first; orphans after it, in start order.
        self.roots.sort(key=lambda s: (s.orphan, s.start_ns, s.span_id))
        self.start_ns = min((s.start_ns for s in self.spans), default=0)
        self.end_ns = max((s.end_ns for s in self.spans), default=0)
        for root in self.roots:
            _place(root, 0)
        self._mark_slow()

    # -- what a list of traces shows ----------------------------------------------------
    @property
    def root(self) -> Span:
        return self.roots[0]

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def service(self) -> str:
        return self.root.service

    @property
    def duration_ms(self) -> float:
        """The trace's extent, first start to last end (all processes)."""
        return (self.end_ns - self.start_ns) / 1e6

    @property
    def errors(self) -> int:
        return sum(1 for s in self.spans if s.error)

    @property
    def status(self) -> str:
        return "error" if self.errors else "ok"

    @property
    def services(self) -> list[str]:
        return sorted({s.service for s in self.spans if s.service})

    @property
    def processes(self) -> list[tuple[str, str, int | None]]:
        seen: dict[tuple[str, str, int | None], None] = {}
        for span in self.spans:
            seen.setdefault(span.process)
        return list(seen)

    def walk(self) -> Iterator[Span]:
        """Every span, depth first, children in start order."""
        stack = list(reversed(self.roots))
        while stack:
            span = stack.pop()
            yield span
            stack.extend(reversed(span.children))

    def _mark_slow(self) -> None:
        extent = self.end_ns - self.start_ns
        for span in self.spans:
            span.self_ms = _self_ns(span) / 1e6
            span.slow = False
        if len(self.spans) < 2 or extent <= 0:
            return
        ranked = sorted(self.spans, key=lambda s: s.self_ms, reverse=True)
        for span in ranked[:SLOW_MARKS]:
            if span.self_ms * 1e6 >= SLOW_SHARE * extent:
                span.slow = True


def _is_ancestor(span: Span, candidate: Span, by_id: dict[str, Span]) -> bool:
    """Is ``span`` an ancestor of ``candidate``? (a cycle of parent ids in bad input)"""
    seen: set[str] = set()
    node: Span | None = candidate
    while node is not None and node.span_id not in seen:
        if node is span:
            return True
        seen.add(node.span_id)
        node = by_id.get(node.parent_id) if node.parent_id else None
    return False


def _place(root: Span, depth: int) -> None:
    stack = [(root, depth)]
    while stack:
        span, level = stack.pop()
        span.depth = level
        stack.extend((child, level + 1) for child in span.children)


def _self_ns(span: Span) -> int:
    """The span's time not covered by any of its children (clipped to the span)."""
    start, end = span.start_ns, max(span.end_ns, span.start_ns)
    covered = 0
    cursor = start
    for child in sorted(span.children, key=lambda c: c.start_ns):
        lo, hi = max(child.start_ns, cursor), min(child.end_ns, end)
        if hi > lo:
            covered += hi - lo
            cursor = hi
    return max(0, end - start - covered)


def build_traces(spans: Iterable[Span]) -> list[Trace]:
    """Traces of ``spans`` (one span per trace id and span id: the last one read wins),
    in start order."""
    by_trace: dict[str, dict[str, Span]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, {})[span.span_id] = span
    traces = [Trace(trace_id, members.values()) for trace_id, members in by_trace.items()]
    traces.sort(key=lambda t: (t.start_ns, t.trace_id))
    return traces


# -- filters ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceFilter:
    """Which traces to show. Empty fields match everything."""

    trace_id: str = ""  # the id or a prefix of it (case-insensitive)
    name: str = ""  # a glob (fnmatch, case-sensitive) that one of its span names matches
    status: str = ""  # "error": a span ended in error; "ok": none did
    min_duration_ms: float = 0.0  # its extent is at least this long
    since_ns: int = 0  # it started at or after this time

    def matches(self, trace: Trace) -> bool:
        if self.trace_id and not trace.trace_id.lower().startswith(self.trace_id.lower()):
            return False
        if self.status and trace.status != self.status:
            return False
        if self.min_duration_ms and trace.duration_ms < self.min_duration_ms:
            return False
        if self.since_ns and trace.start_ns < self.since_ns:
            return False
        return not self.name or any(fnmatchcase(span.name, self.name) for span in trace.spans)

    def describe(self) -> str:
        """The filter as the command-line options that make it."""
        parts = []
        if self.trace_id:
            parts.append(f"--trace {self.trace_id}")
        if self.name:
            parts.append(f"--name {self.name!r}")
        if self.status:
            parts.append(f"--status {self.status}")
        if self.min_duration_ms:
            parts.append(f"--min-duration {format_ms(self.min_duration_ms)}")
        if self.since_ns:
            parts.append(f"--since {local_time(self.since_ns)}")
        return " ".join(parts)


def select(traces: Sequence[Trace], where: TraceFilter, limit: int = 0) -> list[Trace]:
    """The traces ``where`` matches, in start order; with ``limit``, the newest ones."""
    chosen = [trace for trace in traces if where.matches(trace)]
    return chosen[-limit:] if limit > 0 else chosen


def parse_since(text: str, now_ns: int | None = None) -> int:
    """``--since``: a duration back from now (``"10m"``, ``"2h"``) or a point in time
    (``2026-11-27T09:25``, ``2026-11-27 09:25:23``, local time unless it has an offset
    or ``Z``). Returns Unix nanoseconds; raises :class:`ViewerError`."""
    value = text.strip()
    try:
        seconds = parse_duration(value)
    except ValueError:
        pass
    else:
        now = time.time_ns() if now_ns is None else now_ns
        return now - int(seconds * 1e9)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ViewerError(
            f"--since {text!r}: expected a duration back from now (10m, 2h, 1d) "
            "or a time (2026-11-27T09:25, 2026-11-27 09:25:23Z)"
        ) from None
    return int(moment.timestamp() * 1e9)


def parse_min_duration(text: str) -> float:
    """``--min-duration``: a duration (``"50ms"``, ``"1.5s"``) as milliseconds."""
    try:
        return parse_duration(text.strip()) * 1000.0
    except ValueError:
        raise ViewerError(f"--min-duration {text!r}: expected a duration such as 50ms, 1.5s or 2m") from None


# -- figures ------------------------------------------------------------------------------


def format_ms(ms: float) -> str:
    """A duration as the views print it: ``1.23 s``, ``294.8 ms``, ``35.16 ms``,
    ``5.914 ms``, ``0.053 ms``."""
    if ms >= 1000.0:
        return f"{ms / 1000.0:.2f} s"
    if ms >= 100.0:
        return f"{ms:.1f} ms"
    if ms >= 10.0:
        return f"{ms:.2f} ms"
    return f"{ms:.3f} ms"


def local_time(unix_ns: int) -> str:
    """``2026-11-27 10:25:23.123``, local time."""
    seconds, fraction = divmod(unix_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) + f".{fraction // 1_000_000:03d}"


def bar_cells(start_ns: int, end_ns: int, origin_ns: int, extent_ns: int, width: int) -> tuple[int, int]:
    """Where a span's bar goes on a waterfall ``width`` cells wide that covers
    ``extent_ns`` from ``origin_ns``: ``(first cell, number of cells)``, at least one
    cell, within the width."""
    if width <= 0:
        return 0, 0
    if extent_ns <= 0:
        return 0, width
    scale = width / extent_ns
    first = min(width - 1, max(0, round((start_ns - origin_ns) * scale)))
    last = min(width, max(0, round((end_ns - origin_ns) * scale)))
    return first, max(1, last - first)
