"""The buffered, sampled, multi-connection pipeline.

``append()`` is all that runs on the application's thread: an append to a bounded
deque. A flusher thread drains that queue every ``timeout`` (or when half of it
fills), turns each span into its :class:`SpanData` once, samples the records per
connection and hands the kept ones to that connection's runner; each runner has its
own thread and bounded backlog, so a slow or dead destination delays and drops only
its own spans. Every span is counted somewhere: per connection,
``written + dropped + sampled_out + backlog == ended``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from itertools import repeat
from typing import Any

from ._config import Config, ConnectionConfig
from ._registry import Driver
from ._sampling import Sampler
from ._span import Span
from ._spandata import Resource, SpanData, refresh_clock_offset, snapshot

__all__ = ["ConnectionRunner", "Pipeline", "dynamic_factor"]

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


class ConnectionRunner:
    """One connection: its sampler, its bounded backlog and the thread that writes."""

    def __init__(self, config: ConnectionConfig, driver: Driver) -> None:
        self.name = config.name
        self.config = config
        self.driver = driver
        self.sampler = Sampler(config.sample)
        self.factor = 1.0
        # Four times the shared queue: a runner thread may wait several GIL switch
        # intervals (5 ms each) before it can write, while the app keeps ending spans.
        self.capacity = 4 * config.buffer
        self._backlog: deque[Sequence[SpanData]] = deque()  # kept batches, whole
        self._backlog_len = 0  # spans in the backlog
        self._cond = threading.Condition(threading.Lock())
        self._write_lock = threading.Lock()
        self._stopping = False
        self._thread: threading.Thread | None = None
        # counters: each has a single writer thread (flusher or runner).
        self.accepted = 0
        self.sampled_out = 0
        self.dropped_full = 0
        self.dropped_failed = 0
        self.written = 0
        self.write_errors = 0
        self.writes = 0
        self._done = 0
        self.last_error = ""
        self._last_report = 0.0
        self._suppressed = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"infratrace-conn-{self.name}", daemon=True)
        self._thread.start()

    # -- flusher side ---------------------------------------------------------------
    def accept(self, spans: Sequence[SpanData]) -> None:
        # The dynamic factor, from this connection's own backlog: the queue that
        # fills when its destination cannot keep up (see docs/pipeline.md).
        factor = self.factor = dynamic_factor(self._backlog_len / self.capacity)
        sampler = self.sampler
        if sampler.keeps_everything and factor >= 1.0:
            kept: Sequence[SpanData] = spans
        else:
            keep = sampler.keep
            kept = [s for s in spans if keep(s, factor)]
            self.sampled_out += len(spans) - len(kept)
        if not kept:
            return
        with self._cond:
            room = self.capacity - self._backlog_len
            if len(kept) > room:
                self.dropped_full += len(kept) - max(room, 0)
                kept = kept[: max(room, 0)]
            if kept:
                # The batch goes over whole: no per-span work between the threads.
                self._backlog.append(kept)
                self._backlog_len += len(kept)
                self.accepted += len(kept)
                self._cond.notify()

    # -- runner thread --------------------------------------------------------------
    def _run(self) -> None:
        backlog = self._backlog
        cond = self._cond
        limit = self.config.buffer
        while True:
            with cond:
                while not backlog and not self._stopping:
                    cond.wait()
                if not backlog:
                    return
                batch = list(backlog.popleft())
                while backlog and len(batch) + len(backlog[0]) <= limit:
                    batch += backlog.popleft()
                self._backlog_len -= len(batch)
            for start in range(0, len(batch), limit):
                self._write(batch[start : start + limit])
            with cond:
                self._done += len(batch)
                cond.notify_all()

    def _write(self, batch: list[SpanData]) -> None:
        with self._write_lock:
            try:
                self.driver.write(batch)
            except Exception as exc:  # a destination's failure never reaches the app
                self.write_errors += 1
                self.dropped_failed += len(batch)
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._report(exc, len(batch))
            else:
                self.written += len(batch)
                self.writes += 1

    def _report(self, exc: BaseException, lost: int) -> None:
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

    def wait_written(self, deadline: float) -> bool:
        """Wait until everything accepted so far is written (or failed)."""
        with self._cond:
            target = self.accepted
            while self._done < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._thread is None or not self._thread.is_alive():
                    return self._done >= target
                self._cond.wait(remaining)
        return True

    def stop(self, deadline: float) -> bool:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                return False
        try:
            self.driver.close()
        except Exception as exc:
            self._report(exc, 0)
        return True

    def stats(self) -> dict[str, Any]:
        return {
            "driver": self.config.driver,
            "queue_len": self._backlog_len,
            "queue_cap": self.capacity,
            "accepted_count": self.accepted,
            "written_count": self.written,
            "sampled_out_count": self.sampled_out,
            "dropped_count": self.dropped_full + self.dropped_failed,
            "dropped_full_count": self.dropped_full,
            "dropped_failed_count": self.dropped_failed,
            "write_error_count": self.write_errors,
            "flush_count": self.writes,
            "dynamic_sample_factor": self.factor,
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
    """The shared bounded queue, its flusher thread and one runner per connection."""

    def __init__(self, config: Config, drivers: Sequence[Driver]) -> None:
        self.config = config
        self.resource = Resource({**config.resource, "process.pid": os.getpid()})
        self.runners = [ConnectionRunner(conn, driver) for conn, driver in zip(config.connections, drivers, strict=True)]
        self.capacity = max((c.buffer for c in config.connections), default=1024)
        self._wake_at = max(1, self.capacity // 2)
        self.interval = min((c.timeout for c in config.connections), default=0.2)
        self._queue: deque[Span] = deque()
        self._wake = threading.Event()
        self._waking = False
        self._drain_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._last_clock_refresh = time.monotonic()
        self.queued = 0
        self.sync_fallbacks = 0
        self.flushes = 0
        self.flushed_spans = 0
        self.dropped_closed = 0

    def start(self) -> None:
        for runner in self.runners:
            runner.start()
        self._thread = threading.Thread(target=self._run, name="infratrace-flusher", daemon=True)
        self._thread.start()

    # -- application side (hot path) ----------------------------------------------
    def append(self, span: Span) -> None:
        """Take an ended span (the :class:`~infratrace._span.SpanSink` contract)."""
        queue = self._queue
        queue.append(span)
        if len(queue) >= self._wake_at:
            self._after_append()

    def _after_append(self) -> None:
        """The queue reached ``_wake_at``: wake the flusher, or drain it here when full."""
        if len(self._queue) >= self.capacity or self._closed:
            self._submit_slow()
        elif not self._waking:
            self._waking = True
            self._wake.set()

    def _submit_slow(self) -> None:
        """The queue is full (the flusher thread has not had the GIL for a while):
        this thread moves the queued spans to the connections itself. CPU work only —
        writing stays on the runner threads."""
        try:
            if self._closed:
                with self._count_lock:
                    while self._queue:
                        self._queue.popleft()
                        self.dropped_closed += 1
                return
            moved = self.drain()
            with self._count_lock:
                self.sync_fallbacks += moved
        except Exception:
            pass

    # -- flusher thread -------------------------------------------------------------
    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval)
            self._wake.clear()
            self._waking = False
            try:
                self.drain()
            except Exception as exc:  # pragma: no cover - defensive
                print(f"infratrace: flusher error: {exc!r}", file=sys.stderr)

    def drain(self) -> int:
        """Move everything queued now to the connections; returns how many spans."""
        with self._drain_lock:
            queue = self._queue
            count = len(queue)
            now = time.monotonic()
            if now - self._last_clock_refresh > CLOCK_REFRESH_INTERVAL:
                self._last_clock_refresh = now
                refresh_clock_offset()
            if not count:
                return 0
            popleft = queue.popleft
            spans = [popleft() for _ in range(count)]
            try:
                batch = list(map(snapshot, spans, repeat(self.resource, count)))
            except Exception:  # a span snapshot cannot read (a deleted field): the others still go
                batch = self._snapshot_one_by_one(spans)
            self.queued += count
            self.flushes += 1
            self.flushed_spans += count
            for runner in self.runners:
                try:
                    runner.accept(batch)
                except Exception as exc:  # pragma: no cover - defensive
                    runner.dropped_failed += len(batch)
                    runner._report(exc, len(batch))
            return count

    def _snapshot_one_by_one(self, spans: list[Span]) -> list[SpanData]:
        batch: list[SpanData] = []
        for span in spans:
            try:
                batch.append(snapshot(span, self.resource))
            except Exception as exc:
                for runner in self.runners:
                    runner.dropped_failed += 1
                    runner._report(exc, 1)
        return batch

    def force_flush(self, timeout: float | None = None) -> bool:
        """Write everything ended so far; ``False`` if ``timeout`` ran out first."""
        deadline = time.monotonic() + (timeout if timeout is not None else 30.0)
        self.drain()
        return all(runner.wait_written(deadline) for runner in self.runners)

    def shutdown(self, timeout: float | None = None) -> bool:
        deadline = time.monotonic() + (timeout if timeout is not None else 30.0)
        if self._closed:
            return True
        flushed = self.force_flush(max(0.0, deadline - time.monotonic()))
        with self._count_lock:
            self._closed = True
            self._wake_at = 0  # every later submit() takes the slow path, which drops
        self._wake.set()
        self.drain()  # anything ended while we were flushing
        stopped = all([runner.stop(deadline) for runner in self.runners])
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        return flushed and stopped

    # -- fork support ---------------------------------------------------------------
    def quiesce(self) -> list[threading.Lock]:
        """Before ``fork()``: hold the locks so no write is half-done in the child."""
        held = []
        for lock in [self._drain_lock, *(r._write_lock for r in self.runners)]:
            if lock.acquire(timeout=1.0):
                held.append(lock)
        return held

    # -- figures --------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        connections = {runner.name: runner.stats() for runner in self.runners}
        return {
            "queue_len": len(self._queue),
            "queue_cap": self.capacity,
            "queued_count": self.queued,
            "sync_fallback_count": self.sync_fallbacks,
            "ended_count": self.queued + len(self._queue) + self.dropped_closed,
            "flush_count": self.flushes,
            "flush_span_count": self.flushed_spans,
            "write_error_count": sum(r.write_errors for r in self.runners),
            "dropped_count": self.dropped_closed + sum(c["dropped_count"] for c in connections.values()),
            "sampled_out_count": sum(r.sampled_out for r in self.runners),
            "written_count": sum(r.written for r in self.runners),
            "dynamic_sample_factor": min((r.factor for r in self.runners), default=1.0),
            "connections": connections,
        }
