"""The tracer behind the public functions, and the replaceable hook.

``infratrace.begin()`` & co. call whatever :data:`TraceHook` is installed; the default
is :class:`Tracer`, which owns the pipeline. A third party can install its own hook
with :func:`set_hook`."""

from __future__ import annotations

import atexit
import dataclasses
import os
import sys
import threading
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from . import _spandata
from ._budget import _active as _active_budget
from ._budget import dropped_total
from ._config import DEFAULTS, WHERE_LOOKED, Config, load_config
from ._environment import disabled_by_environment
from ._errors import ConfigError
from ._pipeline import Pipeline
from ._propagation import set_propagators
from ._registry import Driver, get_driver_factory
from ._sampling import LocalTrace
from ._span import (
    CLIENT,
    CONSUMER,
    INTERNAL,
    KINDS,
    PRODUCER,
    SERVER,
    STATUS_ERROR,
    NonRecordingSpan,
    Parent,
    Span,
    _current,
    set_sink,
)

__all__ = ["TraceHook", "Tracer", "get_hook", "set_hook", "trace_attrs"]

ENTRY_KINDS = ("method", "service", "trigger", "http", "web", "event", "queue", "cron")
# The span kind an entry kind implies when none is given.
_DEFAULT_SPAN_KIND = {
    "http": SERVER,
    "web": SERVER,
    "queue": PRODUCER,
    "server": SERVER,
    "client": CLIENT,
    "producer": PRODUCER,
    "consumer": CONSUMER,
    "internal": INTERNAL,
}
_KIND_SET = frozenset(KINDS)


def trace_attrs(
    service: str,
    kind: str,
    target: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The unified attribute builder: ``{"service", "kind", "target"}`` plus ``extra``
    (e.g. ``module``, ``operation``). ``kind`` is an entry kind (``method service
    trigger http web event queue cron``) or an OTel span kind (``internal server client
    producer consumer``) — either sets the span kind when passed to ``begin``. Any other
    kind becomes ``custom`` with ``target`` = that kind; an empty target is ``unknown``."""
    text = str(kind).strip().lower() if kind else ""
    if text not in ENTRY_KINDS and text not in _KIND_SET:
        if text:
            target = str(kind)
        text = "custom"
    attrs: dict[str, Any] = dict(extra) if extra else {}
    attrs["service"] = service
    attrs["kind"] = text
    attrs["target"] = target or "unknown"
    return attrs


@runtime_checkable
class TraceHook(Protocol):
    """What a replacement tracer implements. Spans it returns need ``end()``,
    ``set_attribute()``, ``set_status()``, ``record_exception()``, the context-manager
    protocols, and ``_tid``/``_sid``/``flags``/``tracestate`` for propagation.
    ``begin``/``start_span`` may also take ``start_time`` (Unix ns); a hook without it
    is called without it unless an instrumentation backdates a span."""

    def begin(
        self,
        name: str,
        attrs: Mapping[str, Any] | None = None,
        *,
        kind: str | None = None,
        parent: Parent | None = None,
    ) -> Any: ...

    def start_span(
        self,
        name: str,
        attrs: Mapping[str, Any] | None = None,
        *,
        kind: str | None = None,
        parent: Parent | None = None,
    ) -> Any: ...

    def trace(self, name: str, attrs: Mapping[str, Any] | None = None) -> Any: ...

    def current_span(self) -> Any: ...

    def configure(self, config: Config) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    def force_flush(self, timeout: float | None = None) -> bool: ...

    def shutdown(self, timeout: float | None = None) -> bool: ...


class Tracer:
    """The built-in :class:`TraceHook`: makes :class:`Span` objects and feeds the
    pipeline. Unconfigured, it configures itself on the first ended span from
    ``$INFRATRACE_CONFIG`` (or the defaults: one console connection)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._config: Config | None = None
        self._pipeline: Pipeline | None = None
        self._fork_held: list[threading.Lock] = []
        # INFRATRACE_DISABLED / OTEL_SDK_DISABLED: spans are non-recording (they keep
        # the trace's identity for propagation) and nothing reaches the pipeline.
        self._off = disabled_by_environment()

    # -- spans ------------------------------------------------------------------------
    def begin(
        self,
        name: str,
        attrs: Mapping[str, Any] | None = None,
        *,
        kind: str | None = None,
        parent: Parent | None = None,
        start_time: int | None = None,
    ) -> Span | NonRecordingSpan:
        """Begin a span; it is the current span until it ends. Use it as a context
        manager (``with``/``async with``) or call ``.end()``. ``kind`` is one of
        ``internal server client producer consumer`` (default: implied by
        ``attrs["kind"]``); ``parent`` defaults to the current span (pass an
        :func:`infratrace.extract`-ed context to continue a remote trace);
        ``start_time`` (Unix ns) backdates the start."""
        # start_span's body, repeated on purpose: begin() runs for every span, and a
        # call less is a tenth of its cost.
        try:
            if parent is None:
                parent = _current.get()
            budget = _active_budget.get()
            if budget is not None and not budget.take():
                return NonRecordingSpan(_safe_name(name), parent)
            if self._off:
                return _not_traced(name, parent, True)
            if attrs:
                # copy() clones a dict's table; dict() re-inserts key by key when it has holes
                attributes = attrs.copy() if attrs.__class__ is dict else dict(attrs)
                if kind is None:
                    kind = _DEFAULT_SPAN_KIND.get(attributes.get("kind"), INTERNAL)  # type: ignore[arg-type]
            else:
                attributes = {}
            if kind is None:
                kind = INTERNAL
            elif kind not in _KIND_SET:
                kind = _DEFAULT_SPAN_KIND.get(kind, INTERNAL)
            span = Span(
                name if name.__class__ is str else _safe_name(name),
                attributes,
                kind,
                parent,
                0 if start_time is None else start_time - _spandata._clock_offset_ns,
            )
            span._token = _current.set(span)
            return span
        except Exception:  # e.g. a parent that is not a span: never raise into the app
            return NonRecordingSpan(_safe_name(name), None, make_current=False)

    def start_span(
        self,
        name: str,
        attrs: Mapping[str, Any] | None = None,
        *,
        kind: str | None = None,
        parent: Parent | None = None,
        start_time: int | None = None,
    ) -> Span | NonRecordingSpan:
        """Like :meth:`begin` but the span does not become the current span (for
        work that outlives the caller's context: generators, streamed bodies)."""
        try:
            if parent is None:
                parent = _current.get()
            budget = _active_budget.get()
            if budget is not None and not budget.take():
                return NonRecordingSpan(_safe_name(name), parent, make_current=False)
            if self._off:
                return _not_traced(name, parent, False)
            attributes = (attrs.copy() if attrs.__class__ is dict else dict(attrs)) if attrs else {}
            if kind is None:
                kind = _DEFAULT_SPAN_KIND.get(attributes.get("kind"), INTERNAL) if attributes else INTERNAL  # type: ignore[arg-type]
            elif kind not in _KIND_SET:
                kind = _DEFAULT_SPAN_KIND.get(kind, INTERNAL)
            return Span(
                name if name.__class__ is str else _safe_name(name),
                attributes,
                kind,
                parent,
                0 if start_time is None else start_time - _spandata._clock_offset_ns,
            )
        except Exception:
            return NonRecordingSpan(_safe_name(name), None, make_current=False)

    def trace(self, name: str, attrs: Mapping[str, Any] | None = None) -> Span | NonRecordingSpan:
        """A one-shot event span: begun and ended at once. ``attrs["status"]`` sets its
        status; with ``status = "error"``, ``attrs["error"]`` is the message."""
        try:
            attributes = dict(attrs) if attrs else {}
            status = attributes.pop("status", None)
            failed = status is not None and str(status).lower() == STATUS_ERROR
            message = str(attributes.pop("error", "") or "") if failed else ""
            span = self.start_span(name, attributes)
            if not isinstance(span, Span):  # over the request's span budget
                return span
            if failed:
                span.set_status(STATUS_ERROR, message)
            span.end(end_time=span.start_time_unix_nano)
            return span
        except Exception:
            return NonRecordingSpan(_safe_name(name), None, make_current=False)

    def current_span(self) -> Span | NonRecordingSpan | None:
        return _current.get()

    # -- configuration and lifecycle ----------------------------------------------------
    def configure(self, config: Config) -> None:
        if not config.enabled:  # disabled: no driver is built, no file or socket opened
            config = dataclasses.replace(config, connections=())
        drivers: list[Driver] = []
        try:
            for conn in config.connections:
                factory = get_driver_factory(conn.driver, f"{conn.path}.driver")
                drivers.append(factory(conn))
        except BaseException as exc:
            for driver in drivers:
                _close_quietly(driver)
            if isinstance(exc, ConfigError):
                raise exc.with_source(config.source) from None
            raise
        if config.source == DEFAULTS and config.enabled:
            _say_no_configuration_once()
        limits = config.limits
        _spandata.set_limits(limits.attributes, limits.value_length, limits.list_items)
        set_propagators(config.propagators)
        self._off = not config.enabled
        pipeline = Pipeline(config, drivers)
        pipeline.start()
        with self._lock:
            old = self._pipeline
            self._config = config
            self._pipeline = pipeline
            if _hook is self:
                self._install_sink()
        if old is not None:
            old.shutdown(5.0)

    def _install_sink(self) -> None:
        """Point ended spans at this tracer's pipeline (or at the lazy configuration)."""
        set_sink(self if self._pipeline is None else self._pipeline)

    def _configured(self) -> Pipeline | None:
        """The pipeline; the first span begun or ended before any configuration
        configures the tracer from ``$INFRATRACE_CONFIG`` (or the defaults)."""
        try:
            with self._lock:
                if self._pipeline is None:
                    self.configure(load_config(None))
                return self._pipeline
        except Exception as exc:
            print(f"infratrace: could not configure tracing, span dropped: {exc}", file=sys.stderr)
            return None

    def local_root(self, span: Span, flags: int | None, tracestate: str) -> LocalTrace:
        """The sink until the tracer is configured (see :meth:`append`)."""
        pipeline = self._configured()
        if pipeline is not None:
            return pipeline.local_root(span, flags, tracestate)
        return LocalTrace.kept(None, -1, flags, tracestate, span._sid)

    def append(self, span: Span) -> None:
        """The sink until the tracer is configured: the first span configures it and
        goes to the new pipeline."""
        pipeline = self._configured()
        if pipeline is not None:
            pipeline.append(span)

    @property
    def config(self) -> Config | None:
        return self._config

    @property
    def pipeline(self) -> Pipeline | None:
        return self._pipeline

    def stats(self) -> dict[str, Any]:
        pipeline = self._pipeline
        figures = _empty_stats() if pipeline is None else pipeline.stats()
        figures["budget_dropped_count"] = dropped_total()
        figures["attribute_truncated_count"] = _spandata.truncated_total()
        return figures

    def force_flush(self, timeout: float | None = None) -> bool:
        pipeline = self._pipeline
        return True if pipeline is None else pipeline.force_flush(timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush and close every connection. Spans ended afterwards are counted as
        dropped; call :func:`infratrace.configure` to start again."""
        pipeline = self._pipeline
        return True if pipeline is None else pipeline.shutdown(timeout)

    # -- fork ---------------------------------------------------------------------------
    def _before_fork(self) -> None:
        pipeline = self._pipeline
        self._fork_held = pipeline.quiesce() if pipeline is not None else []

    def _after_fork_parent(self) -> None:
        held, self._fork_held = self._fork_held, []
        for lock in held:
            lock.release()

    def _after_fork_child(self) -> None:
        """The parent's threads do not exist here: start a fresh pipeline (new drivers,
        new threads, empty queue — spans queued before the fork are the parent's)."""
        _flush_when_multiprocessing_exits()
        self._fork_held = []
        self._lock = threading.RLock()
        config, self._pipeline = self._config, None
        if _hook is self:
            self._install_sink()
        if config is not None:
            try:
                self.configure(config)
            except Exception as exc:
                print(f"infratrace: could not restart tracing after fork: {exc}", file=sys.stderr)


_said_no_configuration = False


def _say_no_configuration_once() -> None:
    """A process tracing on the defaults says so once: a worker started without the
    web process's configuration would otherwise write its spans to the console only,
    and its half of every trace would be missing from the file without a word."""
    global _said_no_configuration
    if not _said_no_configuration:
        _said_no_configuration = True
        print(f"infratrace: no configuration found ({WHERE_LOOKED}); spans go to the console only", file=sys.stderr)


def _not_traced(name: str, parent: Parent | None, current: bool) -> NonRecordingSpan:
    """A span while tracing is disabled: it records nothing; it passes on a caller's
    trace, and a trace it starts is marked not sampled (``-00``), so no service
    downstream records a trace whose root is never written."""
    span = NonRecordingSpan(_safe_name(name), parent, make_current=current)
    if parent is None:
        span._ctx = (0, "")
    return span


def _close_quietly(driver: Driver) -> None:
    try:
        driver.close()
    except Exception:
        pass


def _empty_stats() -> dict[str, Any]:
    return {
        "queue_len": 0,
        "queue_cap": 0,
        "queued_count": 0,
        "sync_fallback_count": 0,
        "ended_count": 0,
        "flush_count": 0,
        "flush_span_count": 0,
        "write_error_count": 0,
        "dropped_count": 0,
        "sampled_out_count": 0,
        "written_count": 0,
        "dynamic_sample_factor": 1.0,
        "tail_pending_count": 0,
        "tail_overflow_count": 0,
        "connections": {},
    }


_tracer = Tracer()
_hook: TraceHook = _tracer
_tracer._install_sink()


def get_hook() -> TraceHook:
    """The installed tracer (the built-in :class:`Tracer` unless :func:`set_hook` ran)."""
    return _hook._hook if isinstance(_hook, _GuardedHook) else _hook


def set_hook(hook: TraceHook | None) -> TraceHook:
    """Install a replacement tracer (``None`` restores the built-in one); returns the
    previous hook. ``infratrace.begin`` & co. call the hook installed at the time of
    the call, wherever they were imported from."""
    global _hook
    previous = _hook
    if hook is not None and not isinstance(hook, TraceHook):
        raise TypeError(f"{hook!r} does not implement TraceHook (begin, trace, configure, stats, force_flush, shutdown)")
    _hook = _tracer if hook is None or hook is _tracer else _GuardedHook(hook)
    if _hook is _tracer:
        _tracer._install_sink()
    return previous._hook if isinstance(previous, _GuardedHook) else previous


class _GuardedHook:
    """A third-party hook behind a guard: its failures must not reach the application
    (a span that fails to begin is a :class:`NonRecordingSpan` in the same trace), and
    it gets its own copy of the attributes, as the built-in tracer takes one: callers
    (the adapters) may pass a dict they share between requests."""

    def __init__(self, hook: TraceHook) -> None:
        self._hook = hook

    def begin(self, name: str, attrs: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        try:
            return self._hook.begin(name, dict(attrs) if attrs else attrs, **kwargs)
        except Exception:
            return NonRecordingSpan(_safe_name(name), _current.get())

    def start_span(self, name: str, attrs: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        try:
            return self._hook.start_span(name, dict(attrs) if attrs else attrs, **kwargs)
        except Exception:
            return NonRecordingSpan(_safe_name(name), _current.get(), make_current=False)

    def trace(self, name: str, attrs: Mapping[str, Any] | None = None) -> Any:
        try:
            return self._hook.trace(name, dict(attrs) if attrs else attrs)
        except Exception:
            return NonRecordingSpan(_safe_name(name), _current.get(), make_current=False)

    def current_span(self) -> Any:
        return self._hook.current_span()

    def configure(self, config: Config) -> None:
        self._hook.configure(config)

    def stats(self) -> dict[str, Any]:
        return self._hook.stats()

    def force_flush(self, timeout: float | None = None) -> bool:
        return self._hook.force_flush(timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        return self._hook.shutdown(timeout)


def _safe_name(name: object) -> str:
    return _spandata.safe_str(name)


def _at_exit() -> None:
    try:
        _hook.shutdown(5.0)
    except Exception:
        pass


def _flush_when_multiprocessing_exits() -> None:
    """In a child forked by ``multiprocessing`` (a ``Process``, a ``Pool`` worker), which
    leaves through ``os._exit`` and so never runs ``atexit``: flush from the
    finalizers ``multiprocessing`` runs when the child's work is done. The child's
    bootstrap clears the finalizers it inherited, then runs its after-fork hooks: the
    finalizer is registered from one of those. (A child started with ``spawn`` or
    ``forkserver`` exits normally, through ``atexit``.)"""
    util = sys.modules.get("multiprocessing.util")
    if util is None:  # not multiprocessing's fork: os.fork() users call shutdown() themselves
        return
    try:
        util.register_after_fork(_exit_flusher, _register_exit_flush)
    except Exception:
        pass


class _ExitFlusher:
    """A weak-referenceable key for ``multiprocessing.util.register_after_fork``."""


_exit_flusher = _ExitFlusher()


def _register_exit_flush(_: object) -> None:
    try:
        sys.modules["multiprocessing.util"].Finalize(None, _at_exit, exitpriority=100)
    except Exception:
        pass


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=lambda: _tracer._before_fork(),
        after_in_parent=lambda: _tracer._after_fork_parent(),
        after_in_child=lambda: _tracer._after_fork_child(),
    )
