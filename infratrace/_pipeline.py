"""The buffered, sampled, multi-connection pipeline.

Where a span ends, its thread turns it into output; background threads only write.
``append()`` (the span sink) makes the span's :class:`SpanData` once, and each
connection samples it and has its driver encode it (a JSON or text line, for the file
and console drivers) into that connection's bounded backlog. Each connection has one
thread: it wakes every ``timeout``, or as soon as a whole ``buffer`` waits, and hands
what is there to its driver in one write. Its
work is I/O, during which it does not hold the GIL, and it takes the GIL back as seldom
as it can: each time costs a busy application thread a hand-off (the measurements are
in docs/pipeline.md).

A slow or dead destination fills only its own backlog. When a backlog is full, the
connection's overflow policy applies: a local driver (file, console) writes the backlog
on the calling thread (``sync``: nothing lost); any other sheds load by sampling harder,
then drops what does not fit. Every span is counted somewhere: per connection,
``written + dropped + sampled_out + queued == ended``.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any

from ._budget import count_of
from ._config import Config, ConnectionConfig
from ._registry import Driver
from ._sampling import LocalTrace, Sampler
from ._span import Span
from ._spandata import Resource, SpanData, refresh_clock_offset, snapshot

__all__ = ["ConnectionRunner", "Pipeline", "dynamic_factor", "in_pipeline"]

# True while a driver writes a batch, on whatever thread (its connection's, or the
# application's under overflow = "sync" or force_flush()): instrumentations of the
# libraries a driver may send with trace nothing then, or a destination's own requests
# would be spans to send.
_writing: ContextVar[bool] = ContextVar("infratrace_pipeline_writing", default=False)


def in_pipeline() -> bool:
    """Whether the caller runs inside a driver's write (see ``_writing``)."""
    return _writing.get()


ERROR_REPORT_INTERVAL = 10.0  # seconds between two stderr reports of one connection
CLOCK_REFRESH_INTERVAL = 30.0


def dynamic_factor(load: float) -> float:
    """Shed load by sampling harder as a connection's backlog fills: 0.5 at 80 %,
    0.2 at 90 %, 0.1 at 95 %."""
    if load >= 0.95:
        return 0.1
    if load >= 0.90:
        return 0.2
    if load >= 0.80:
        return 0.5
    return 1.0


FACTOR_STEPS = (0.1, 0.2, 0.5, 1.0)
FACTOR_RECOVERY = 1.0  # seconds below a threshold before the factor rises one step


class ConnectionRunner:
    """One connection: its sampler, its driver's encoding step, its bounded backlog and
    the thread that writes it.

    A driver with an ``encode(span)`` method has each kept span encoded where it ends,
    and its ``write_encoded(items)`` called with the encoded items; a driver without
    one gets the ``SpanData`` records in ``write(spans)`` and encodes them on this
    connection's thread."""

    def __init__(self, config: ConnectionConfig, driver: Driver) -> None:
        self.name = config.name
        self.config = config
        self.driver = driver
        self.sampler = Sampler(config.sample)
        encode: Callable[[SpanData], Any] | None = getattr(driver, "encode", None)
        self._encode = encode
        self._write_items: Callable[[Sequence[Any]], None] = driver.write_encoded if encode is not None else driver.write  # type: ignore[attr-defined]
        self.overflow = config.overflow or getattr(driver, "overflow", "sample")
        self.sync_overflow = self.overflow == "sync"
        self.dynamic = self.overflow == "sample"
        self._factor = 1.0
        self._factor_since = 0.0
        # Each time the thread takes the GIL back (a wake-up, the return of each system
        # call it makes) it waits for the application's thread to let it go, and is
        # woken at each of that thread's own system calls meanwhile: the fewer times
        # it runs, the less it costs a busy server. So it writes a whole buffer at a
        # time, and the backlog has room for three more while it waits for the GIL.
        self.capacity = 4 * config.buffer
        self.wake_at = max(1, config.buffer)
        self.interval = config.timeout
        self._backlog: list[Any] = []
        self._lock = threading.Lock()  # the backlog and the counters of the offering side
        self._cond = threading.Condition(self._lock)
        self._write_lock = threading.Lock()  # one driver write at a time; the write counters
        self._wake = threading.Event()
        self._waking = False  # the thread was woken for a full buffer
        self._in_flight = 0  # taken from the backlog, not written or failed yet
        self._stopping = False
        self._thread: threading.Thread | None = None
        # counters (under _lock): offered spans
        self.accepted = 0
        self.sampled_out = 0
        self.dropped_full = 0
        self.sync_writes = 0
        # tail decisions (under _lock)
        self.holding = 0  # traces held for a tail decision now
        self.held = 0  # their spans
        self.tail_kept = 0  # traces kept by a tail decision
        self.tail_overflow = 0  # spans beyond pending_spans of a held trace (lost: counted dropped)
        self.tail_overflow_traces = 0  # traces decided at their root only: pending_traces were held
        # counters (under _write_lock): writes
        self.dropped_failed = 0
        self.encode_errors = 0  # of those, spans the driver could not encode
        self.written = 0
        self.write_errors = 0
        self.writes = 0
        self.last_error = ""
        self._last_report = 0.0
        self._suppressed = 0
        self._last_clock_refresh = time.monotonic()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"infratrace-conn-{self.name}", daemon=True)
        self._thread.start()

    # -- the application's side: where a span begins and ends ----------------------
    def factor(self) -> float:
        """The dynamic sample factor (``overflow = "sample"``): it falls as soon as the
        backlog fills (0.5 at 80 %, 0.2 at 90 %, 0.1 at 95 %) and rises one step per
        second once the backlog is below the step's threshold, whether or not spans
        arrive (it is computed when read). Applied to root decisions only."""
        if not self.dynamic:
            return 1.0
        target = dynamic_factor((len(self._backlog) + self._in_flight) / self.capacity)
        current = self._factor
        now = time.monotonic()
        if target <= current:
            if target < current:
                self._factor, self._factor_since = target, now
            return target
        if now - self._factor_since >= FACTOR_RECOVERY:
            current = FACTOR_STEPS[FACTOR_STEPS.index(current) + 1]
            self._factor, self._factor_since = current, now
        return current

    def sample_out(self, count: int = 1) -> None:
        with self._lock:
            self.sampled_out += count

    def offer(self, data: Any) -> None:
        """Encode and queue one kept span; never raises."""
        try:
            encode = self._encode
            item = data if encode is None else encode(data)
        except Exception as exc:  # a span this driver cannot encode: it alone is lost
            self.fail(exc, encoding=True)
            return
        overflow: list[Any] | None = None
        wake = False
        with self._lock:
            backlog = self._backlog
            # Full: a sync connection counts its backlog only (what is in flight is
            # being written: at most twice the capacity is held); any other counts
            # what it holds in all.
            if len(backlog) + (0 if self.sync_overflow else self._in_flight) >= self.capacity:
                if not self.sync_overflow or self._stopping:
                    self.dropped_full += 1
                    return
                backlog.append(item)
                self.accepted += 1
                overflow = self._take()
                self.sync_writes += len(overflow)
            else:
                backlog.append(item)
                self.accepted += 1
                if len(backlog) >= self.wake_at and not self._waking:
                    self._waking = wake = True
        if overflow is not None:
            # overflow = "sync": this thread writes (the one case where ending a span
            # waits on I/O), and nothing is lost.
            self._deliver(overflow)
        elif wake:
            self._wake.set()

    def fail(self, exc: BaseException, *, encoding: bool = False) -> None:
        """One span lost on this connection: it could not be snapshotted, or (with
        ``encoding``) its driver could not encode it."""
        with self._write_lock:
            self.dropped_failed += 1
            self.encode_errors += encoding
            self._failed(exc, 1)

    # -- writing --------------------------------------------------------------------
    def _take(self) -> list[Any]:
        """Everything in the backlog, now in flight (call with ``_lock`` held)."""
        items, self._backlog = self._backlog, []
        self._in_flight += len(items)
        return items

    def _deliver(self, items: list[Any]) -> None:
        limit = self.config.buffer
        for start in range(0, len(items), limit):
            self._write(items[start : start + limit])
        with self._cond:
            self._in_flight -= len(items)
            self._cond.notify_all()

    def _write(self, batch: list[Any]) -> None:
        with self._write_lock:
            token = _writing.set(True)
            try:
                self._write_items(batch)
            except Exception as exc:  # a destination's failure never reaches the app
                self.write_errors += 1
                self.dropped_failed += len(batch)
                self._failed(exc, len(batch))
            else:
                self.written += len(batch)
                self.writes += 1
            finally:
                _writing.reset(token)

    def _run(self) -> None:
        wake = self._wake
        while True:
            wake.wait(self.interval)
            with self._lock:
                wake.clear()
                self._waking = False
                items = self._take() if self._backlog else []
                stopping = self._stopping
            if items:
                self._deliver(items)
            elif stopping:
                return
            now = time.monotonic()
            if now - self._last_clock_refresh > CLOCK_REFRESH_INTERVAL:
                self._last_clock_refresh = now
                refresh_clock_offset()

    def _failed(self, exc: BaseException, lost: int) -> None:
        """Record and report a failure (call with ``_write_lock`` held)."""
        self.last_error = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        if now - self._last_report < ERROR_REPORT_INTERVAL:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} more failures since the last report)" if self._suppressed else ""
        self._last_report = now
        self._suppressed = 0
        try:
            print(
                f"infratrace: connection {self.name!r} ({self.config.driver}) failed to write "
                f"{lost} spans: {type(exc).__name__}: {exc}{more}",
                file=sys.stderr,
            )
        except Exception:
            pass

    def flush(self, deadline: float) -> bool:
        """Write everything queued so far, on this thread, and wait for what the
        connection's own thread is writing; ``False`` if the deadline passed first."""
        with self._lock:
            items = self._take()
        if items:
            self._deliver(items)
        with self._cond:
            while self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._thread is None or not self._thread.is_alive():
                    return self._in_flight == 0
                self._cond.wait(remaining)
        return True

    def stop(self, deadline: float) -> bool:
        with self._lock:
            self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                return False
        self.flush(deadline)  # anything offered while the thread was stopping
        try:
            self.driver.close()
        except Exception as exc:
            with self._write_lock:
                self._failed(exc, 0)
        return True

    # -- figures --------------------------------------------------------------------
    @property
    def queued(self) -> int:
        """Spans kept and not written yet: the backlog and the write in flight."""
        return len(self._backlog) + self._in_flight

    def stats(self) -> dict[str, Any]:
        return {
            "driver": self.config.driver,
            "overflow": self.overflow,
            "queue_len": self.queued,
            "queue_cap": self.capacity,
            "accepted_count": self.accepted,
            "written_count": self.written,
            "sampled_out_count": self.sampled_out,
            "dropped_count": self.dropped_full + self.dropped_failed,
            "dropped_full_count": self.dropped_full,
            "dropped_failed_count": self.dropped_failed,
            "sync_fallback_count": self.sync_writes,
            "write_error_count": self.write_errors,
            "encode_error_count": self.encode_errors,
            "flush_count": self.writes,
            "dynamic_sample_factor": self.factor(),
            "tail_pending_traces": self.holding,
            "tail_pending_count": self.held,
            "tail_kept_count": self.tail_kept,
            "tail_overflow_count": self.tail_overflow,
            "tail_overflow_trace_count": self.tail_overflow_traces,
            "last_error": self.last_error,
            **self._driver_stats(),
        }

    def _driver_stats(self) -> dict[str, Any]:
        """A driver may report its own figures (retries, rejected spans) through an
        optional ``stats()`` method; they appear under ``driver_stats``."""
        report = getattr(self.driver, "stats", None)
        if report is None:
            return {}
        try:
            return {"driver_stats": dict(report())}
        except Exception as exc:
            return {"driver_stats": {"error": f"{type(exc).__name__}: {exc}"}}


class Pipeline:
    """The span sink: each local trace's sampling decisions, and one snapshot per ended
    span, offered to every connection that keeps it."""

    def __init__(self, config: Config, drivers: Sequence[Driver]) -> None:
        self.config = config
        self.resource = Resource({**config.resource, "process.pid": os.getpid()})
        self.runners = [ConnectionRunner(conn, driver) for conn, driver in zip(config.connections, drivers, strict=True)]
        self._ended = itertools.count()
        self._dropped_closed = itertools.count()
        self._tail_lock = threading.Lock()  # the spans held for tail decisions
        # Fast paths: every connection keeps every new trace (rate 1, no rules), and
        # no connection decides span by span.
        samplers = [r.sampler for r in self.runners]
        self._all = (1 << len(self.runners)) - 1
        self._keeps_all = all(s.rate >= 1.0 and not s.rules and not s.per_span for s in samplers)
        self._honors_all = all(s.honor_parent for s in samplers)
        self._dynamic = [r for r in self.runners if r.dynamic]
        self._per_span = any(s.per_span for s in samplers)
        # What such a trace carries is the same for every one of them (nothing is held
        # for a tail decision, so its root and error flag are never read): one object.
        self._kept_by_all = LocalTrace(self, self._all, 0, 1, "", 0)
        self._closed = False

    def start(self) -> None:
        for runner in self.runners:
            runner.start()

    # -- application side -------------------------------------------------------------
    def local_root(self, span: Span, flags: int | None, tracestate: str) -> LocalTrace:
        """Each connection's decision for the trace ``span`` begins here (the
        :class:`~infratrace._span.SpanSink` contract): kept, held for a tail decision,
        or dropped. ``flags``: a remote parent's trace flags (``None``: a new trace)."""
        if (
            self._keeps_all
            and (flags is None or (flags & 1 and self._honors_all))
            and (not self._dynamic or all(r.factor() >= 1.0 for r in self._dynamic))
        ):
            if (flags is None or flags == 1) and not tracestate:
                return self._kept_by_all
            return LocalTrace.kept(self, self._all, flags, tracestate, span._sid)
        keep = tail = 0
        bit = 1
        try:
            for runner in self.runners:
                sampler = runner.sampler
                if sampler.per_span or sampler.decide(span._tid, span.name, span.attributes, flags, runner.factor()):
                    keep |= bit
                elif sampler.tails:
                    if runner.holding < sampler.pending_traces:
                        tail |= bit
                        with runner._lock:
                            runner.holding += 1
                    else:  # too many traces held: this one is decided at its root only
                        with runner._lock:
                            runner.tail_overflow_traces += 1
                bit <<= 1
        except Exception:  # a sampler that fails keeps the trace: never a hole
            keep, tail = -1, 0
        sampled = 1 if keep else 0
        return LocalTrace(self, keep, tail, sampled if flags is None else (flags & 0xFE) | sampled, tracestate, span._sid)

    def append(self, span: Span) -> None:
        """Take an ended span (the :class:`~infratrace._span.SpanSink` contract)."""
        next(self._ended)
        if self._closed:
            next(self._dropped_closed)
            return
        try:
            data = snapshot(span, self.resource)
        except Exception as exc:  # a span the snapshot cannot read (a deleted field)
            for runner in self.runners:
                runner.fail(exc)
            return
        trace = span._ctx
        if trace is self._kept_by_all or not isinstance(trace, LocalTrace) or trace.owner is not self:
            # Kept by every connection: the common case first (a trace every connection
            # keeps whole, nothing held for a tail decision, so its error flag is never
            # read); then a trace begun under another configuration, so that no trace
            # loses its middle.
            for runner in self.runners:
                runner.offer(data)
            return
        if data.status == "error":
            trace.error = True
        keep, tail = trace.keep, trace.tail
        if keep == self._all and not self._per_span:  # kept by every connection
            for runner in self.runners:
                runner.offer(data)
            return
        bit = 1
        for runner in self.runners:
            if keep & bit:
                if not runner.sampler.per_span or runner.sampler.keep_span(data):
                    runner.offer(data)
                else:
                    runner.sample_out()
            elif not tail & bit:
                runner.sample_out()
            bit <<= 1
        if tail:
            self._hold(trace, data, span._sid == trace.root, tail)

    def _hold(self, trace: LocalTrace, data: SpanData, is_root: bool, waiting: int) -> None:
        """Keep ``data`` for the connections whose decision waits for the local root's
        end (at most ``pending_spans`` of a trace; the root always counts). At the
        root's end, decide (``error``, ``slow``): hand everything held over, or count
        it out."""
        with self._tail_lock:
            tail = trace.tail
            decided = tail != waiting  # meanwhile: the root ended on another thread
            if not decided and not is_root:
                pending = trace.pending
                if pending is None:
                    pending = trace.pending = []
                n = len(pending)
                appended = False
                bit = 1
                for runner in self.runners:
                    if tail & bit:
                        with runner._lock:
                            if n < runner.sampler.pending_spans:
                                runner.held += 1
                                appended = True
                            else:
                                runner.tail_overflow += 1
                                runner.dropped_full += 1
                    bit <<= 1
                if appended:
                    pending.append(data)
                return
            if not decided:  # the root: take what is held, and decide
                held = trace.pending or []
                trace.tail = 0
                trace.pending = None
        if decided:
            self._follow(trace, data, waiting)
            return
        bit = 1
        for runner in self.runners:
            if tail & bit:
                count = min(len(held), runner.sampler.pending_spans)
                try:
                    kept = runner.sampler.tail_keeps(trace, data)
                except Exception:
                    kept = True
                with runner._lock:
                    runner.holding -= 1
                    runner.held -= count
                    if kept:
                        runner.tail_kept += 1
                    else:
                        runner.sampled_out += count + 1
                if kept:
                    trace.keep |= bit  # spans that end after the root follow this decision
                    for span in held[:count]:
                        runner.offer(span)
                    runner.offer(data)
            bit <<= 1

    def _follow(self, trace: LocalTrace, data: SpanData, waiting: int) -> None:
        """A span of a trace whose tail decision was made while it ended: the
        connections that were ``waiting`` follow that decision."""
        keep = trace.keep
        bit = 1
        for runner in self.runners:
            if waiting & bit:
                if keep & bit:
                    runner.offer(data)
                else:
                    runner.sample_out()
            bit <<= 1

    # -- flushing -----------------------------------------------------------------------
    def force_flush(self, timeout: float | None = None) -> bool:
        """Write everything ended so far; ``False`` if ``timeout`` ran out first."""
        deadline = time.monotonic() + (timeout if timeout is not None else 30.0)
        return all([runner.flush(deadline) for runner in self.runners])

    def shutdown(self, timeout: float | None = None) -> bool:
        deadline = time.monotonic() + (timeout if timeout is not None else 30.0)
        if self._closed:
            return True
        flushed = self.force_flush(max(0.0, deadline - time.monotonic()))
        self._closed = True
        stopped = all([runner.stop(deadline) for runner in self.runners])
        return flushed and stopped

    # -- fork support ---------------------------------------------------------------
    def quiesce(self) -> list[threading.Lock]:
        """Before ``fork()``: hold the locks so no write is half-done in the child."""
        held = []
        for runner in self.runners:
            for lock in (runner._write_lock, runner._lock):
                if lock.acquire(timeout=1.0):
                    held.append(lock)
        return held

    # -- figures --------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        connections = {runner.name: runner.stats() for runner in self.runners}
        dropped_closed = count_of(self._dropped_closed)
        ended = count_of(self._ended)
        return {
            "queue_len": sum(r.queued for r in self.runners),
            "queue_cap": sum(r.capacity for r in self.runners),
            "queued_count": ended - dropped_closed,
            "sync_fallback_count": sum(r.sync_writes for r in self.runners),
            "ended_count": ended,
            "flush_count": sum(r.writes for r in self.runners),
            "flush_span_count": sum(r.written for r in self.runners),
            "write_error_count": sum(r.write_errors for r in self.runners),
            "dropped_count": dropped_closed + sum(c["dropped_count"] for c in connections.values()),
            "sampled_out_count": sum(r.sampled_out for r in self.runners),
            "written_count": sum(r.written for r in self.runners),
            "dynamic_sample_factor": min((r.factor() for r in self.runners), default=1.0),
            "tail_pending_count": sum(r.held for r in self.runners),
            "tail_overflow_count": sum(r.tail_overflow for r in self.runners),
            "connections": connections,
        }
