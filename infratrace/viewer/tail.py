"""``infratrace tail``: traces printed as they complete, from files that grow.

A span is written when it ends, children before their parent, so a trace's part in
one process is complete when its *local root* is written: a span without a parent,
or a server or consumer span (its parent is in the calling process), or a span whose
parent ran in another process. :class:`Tailer` prints a trace then, with every span
of it read so far; when another part arrives later (the Celery task of a request,
written by the worker), the trace is printed again, whole, marked as continued.
Spans that no local root follows (a root still running, a parent never written) are
printed after ``wait`` seconds without news of their trace.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from .model import Span, Trace, TraceFilter
from .reading import Watch

__all__ = ["Tailer"]

MAX_TRACES = 10_000  # traces remembered (for their later parts); the least recently active go first


class Tailer:
    def __init__(
        self,
        watch: Watch,
        emit: Callable[[Trace, str], None],
        where: TraceFilter | None = None,
        *,
        wait: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        max_traces: int = MAX_TRACES,
    ) -> None:
        self.watch = watch
        self.emit = emit
        self.where = where or TraceFilter()
        self.wait = wait
        self.clock = clock
        self.max_traces = max_traces
        self.spans: OrderedDict[str, dict[str, Span]] = OrderedDict()  # by trace id, least recently active first
        self.pending: dict[str, list[Span]] = {}  # read, not printed yet
        self.since: dict[str, float] = {}  # when the trace last got a span
        self.printed: dict[str, int] = {}  # spans shown when it was last printed

    def start(self, last: int = 0) -> int:
        """Read what the files hold now and print the ``last`` traces of it whose local
        root has ended; returns how many were printed."""
        self._add(self.watch.poll())
        ready = [trace_id for trace_id, spans in self.pending.items() if any(self._ends_part(s) for s in spans)]
        self.pending.clear()
        traces = sorted((Trace(t, self.spans[t].values()) for t in ready), key=lambda t: (t.start_ns, t.trace_id))
        shown = 0
        if last > 0:
            for trace in [t for t in traces if self.where.matches(t)][-last:]:
                self._print(trace)
                shown += 1
        for trace_id in self.spans:
            self.printed.setdefault(trace_id, len(self.spans[trace_id]))
        return shown

    def step(self) -> int:
        """Read what was written since, and print the traces a local root completed
        (and those left waiting too long); returns how many were printed."""
        self._add(self.watch.poll())
        now = self.clock()
        due = [
            trace_id
            for trace_id, spans in self.pending.items()
            if any(self._ends_part(s) for s in spans) or now - self.since.get(trace_id, now) >= self.wait
        ]
        shown = 0
        for trace_id in due:
            del self.pending[trace_id]
            trace = Trace(trace_id, self.spans[trace_id].values())
            if self.where.matches(trace):
                self._print(trace)
                shown += 1
            else:
                self.printed[trace_id] = len(trace.spans)
        return shown

    def _add(self, spans: list[Span]) -> None:
        now = self.clock()
        for span in spans:
            members = self.spans.get(span.trace_id)
            if members is None:
                members = self.spans[span.trace_id] = {}
            elif span.span_id in members:
                continue  # read again (a rotated part once gzipped)
            else:
                self.spans.move_to_end(span.trace_id)
            members[span.span_id] = span
            self.pending.setdefault(span.trace_id, []).append(span)
            self.since[span.trace_id] = now
        while len(self.spans) > self.max_traces:
            trace_id, _ = self.spans.popitem(last=False)
            self.pending.pop(trace_id, None)
            self.since.pop(trace_id, None)
            self.printed.pop(trace_id, None)

    def _ends_part(self, span: Span) -> bool:
        """Is ``span`` the local root of its trace's part in one process?"""
        if span.entry:
            return True
        parent = self.spans.get(span.trace_id, {}).get(span.parent_id)
        return parent is not None and parent.process != span.process

    def _print(self, trace: Trace) -> None:
        before = self.printed.get(trace.trace_id)
        self.printed[trace.trace_id] = len(trace.spans)
        added = len(trace.spans) - (before or 0)
        title = "" if before is None else f"continued (+{added} span{'s' if added != 1 else ''})"
        self.emit(trace, title)
