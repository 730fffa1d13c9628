"""The span: one timed unit of work, its ids, status and the current-span context.

This is the hot path of the whole library. A span keeps integers and a monotonic
timestamp while it runs; hex ids, wall-clock times and formatting are produced later by
the background pipeline, so ``begin`` + ``end`` cost about a microsecond.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from contextvars import ContextVar, Token
from random import getrandbits
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union

__all__ = [
    "KINDS",
    "attach",
    "detach",
    "NonRecordingSpan",
    "Span",
    "SpanContext",
    "current_span",
]

INTERNAL = "internal"
SERVER = "server"
CLIENT = "client"
PRODUCER = "producer"
CONSUMER = "consumer"
KINDS = (INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER)

Status = Literal["ok", "error"]
STATUS_OK: Status = "ok"
STATUS_ERROR: Status = "error"

_perf_ns = time.perf_counter_ns

# Wall clock = monotonic clock + offset. One clock read per timestamp; the pipeline
# refreshes the offset (see refresh_clock_offset) so NTP steps are followed.
_clock_offset_ns: int = time.time_ns() - time.perf_counter_ns()


def refresh_clock_offset() -> None:
    global _clock_offset_ns
    _clock_offset_ns = time.time_ns() - time.perf_counter_ns()


def wall_ns(perf_ns: int) -> int:
    """Convert a ``perf_counter_ns`` reading into Unix nanoseconds."""
    return perf_ns + _clock_offset_ns


class _Identity:
    """Ids and propagation fields shared by recording and non-recording spans."""

    __slots__ = ()
    _tid: int
    _sid: int
    _pid: int
    _ctx: tuple[int, str] | None

    @property
    def trace_id(self) -> str:
        return "%032x" % self._tid

    @property
    def span_id(self) -> str:
        return "%016x" % self._sid

    @property
    def parent_span_id(self) -> str:
        return "%016x" % self._pid if self._pid else ""

    @property
    def flags(self) -> int:
        return 1 if self._ctx is None else self._ctx[0]

    @property
    def tracestate(self) -> str:
        return "" if self._ctx is None else self._ctx[1]

    @property
    def context(self) -> SpanContext:
        return SpanContext(self._tid, self._sid, self.flags, self.tracestate, False)


class _ContextMethods(_Identity):
    """:class:`SpanContext`'s methods, shared by its C and pure-Python forms."""

    __slots__ = ()
    _pid = 0  # a context is not a span of ours: it has no parent here
    is_remote: bool

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 1)

    def __repr__(self) -> str:
        return f"SpanContext(trace_id={self.trace_id}, span_id={self.span_id}, flags={self.flags:02x})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ContextMethods) and (self._tid, self._sid, self.flags, self.tracestate) == (
            other._tid,
            other._sid,
            other.flags,
            other.tracestate,
        )

    def __hash__(self) -> int:
        return hash((self._tid, self._sid))

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle and copy rebuild it from its fields (the C form has no __dict__ or slots to copy)
        return (type(self), (self._tid, self._sid, self.flags, self.tracestate, self.is_remote))


class PySpanContext(_ContextMethods):
    """The identity of a span that lives elsewhere (another process, a message header).

    Produced by :func:`infratrace.extract`; pass it as ``parent=`` to continue a trace.
    (The pure-Python form: what :class:`SpanContext` is without the C speedups.)
    """

    __slots__ = ("_ctx", "_sid", "_tid", "is_remote")

    def __init__(
        self,
        trace_id: int,
        span_id: int,
        flags: int = 1,
        tracestate: str = "",
        is_remote: bool = True,
    ) -> None:
        self._tid = trace_id
        self._sid = span_id
        # Shared with child spans as is: None is the common case (sampled, no state).
        self._ctx: tuple[int, str] | None = None if (flags == 1 and not tracestate) else (flags, tracestate)
        self.is_remote = is_remote


Parent = Union["Span", "NonRecordingSpan", "SpanContext"]
_S = TypeVar("_S", bound="_SpanMethods")

_current: ContextVar[Span | NonRecordingSpan | None] = ContextVar("infratrace_current_span", default=None)


def current_span() -> Span | NonRecordingSpan | None:
    """The span that new spans in this thread / asyncio task become children of."""
    return _current.get()


CurrentToken = Token["Span | NonRecordingSpan | None"]


def attach(span: Span | NonRecordingSpan | None) -> CurrentToken:
    """Make ``span`` the current span of this context (for code that runs a span's
    work in pieces — a streamed body, a callback); undo with :func:`detach`."""
    return _current.set(span)


def detach(token: CurrentToken) -> None:
    """Undo :func:`attach`; harmless when called from another context."""
    try:
        _current.reset(token)
    except ValueError:
        pass


def _discard(span: Span) -> None:  # until a tracer installs its sink
    pass


# Where ended spans go: the default tracer points this at its pipeline's submit().
_sink: Callable[[Span], None] = _discard


def set_sink(sink: Callable[[Span], None], pipeline: Any = None) -> None:
    """Send ended spans to ``sink``. With ``pipeline`` (whose ``submit`` is ``sink``),
    the C span appends to its queue itself, one Python call less per span."""
    global _sink
    _sink = sink
    if _speedups is not None:
        _speedups.set_sink(sink, pipeline)


def pure_python_requested() -> bool:
    """``INFRATRACE_PURE_PYTHON`` is set to anything but ``0``: no C speedups."""
    return os.environ.get("INFRATRACE_PURE_PYTHON", "0") not in ("", "0")


def import_speedups() -> Any:
    """The C extension (csrc/speedups), or ``None`` when it is not built."""
    try:
        from . import _speedups  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _speedups


# The C hot path, unless it is not built or INFRATRACE_PURE_PYTHON is set at import.
_speedups: Any = None if pure_python_requested() else import_speedups()


if TYPE_CHECKING or _speedups is None:
    SpanContext = PySpanContext
else:

    class SpanContext(_speedups.ContextBase, _ContextMethods):
        """The identity of a span that lives elsewhere (another process, a message header).

        Produced by :func:`infratrace.extract`; pass it as ``parent=`` to continue a trace.
        Its ids are held in C (csrc/speedups/span.c), so a span begun under it copies
        them without converting Python ints.
        """

        __slots__ = ()


class _SpanMethods(_Identity):
    """A recording span's methods, shared by the C and the pure-Python span. The C
    span's own ``end``, ``__enter__`` and ``__exit__`` come first in its MRO; the ones
    here are the pure-Python span's (and the reference for the C code)."""

    if not TYPE_CHECKING:  # the attributes below are the subclasses' slots
        __slots__ = ()
    name: str
    kind: str
    attributes: dict[str, Any]
    _t0: int
    _t1: int
    _status: tuple[Status, int, str] | None
    _events: list[tuple[str, int, dict[str, Any]]] | None
    _token: Token[Span | NonRecordingSpan | None] | None

    @property
    def is_recording(self) -> bool:
        return not self._t1

    @property
    def ended(self) -> bool:
        return bool(self._t1)

    # -- status -------------------------------------------------------------------
    @property
    def status(self) -> Status:
        return STATUS_OK if self._status is None else self._status[0]

    @property
    def status_code(self) -> int:
        return 0 if self._status is None else self._status[1]

    @property
    def status_message(self) -> str:
        return "" if self._status is None else self._status[2]

    @property
    def events(self) -> list[tuple[str, int, dict[str, Any]]]:
        return self._events or []

    # -- times (Unix nanoseconds) ---------------------------------------------------
    @property
    def start_time_unix_nano(self) -> int:
        return self._t0 + _clock_offset_ns

    @property
    def end_time_unix_nano(self) -> int:
        return (self._t1 or _perf_ns()) + _clock_offset_ns

    @property
    def duration_ns(self) -> int:
        return (self._t1 or _perf_ns()) - self._t0

    # -- mutation -----------------------------------------------------------------
    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        self.attributes.update(attributes)

    def set_status(self, status: str, message: str | None = None, code: int | None = None) -> None:
        """Set ``status`` ("ok" or "error"), with an optional message and code (an
        error without a code gets code 1)."""
        new: Status = STATUS_ERROR if status == STATUS_ERROR else STATUS_OK
        old_code, old_message = self.status_code, self.status_message
        if code is None:
            code = old_code if old_code else (1 if new == STATUS_ERROR else 0)
        self._status = (new, int(code), old_message if message is None else str(message))

    def add_event(self, name: str, attributes: dict[str, Any] | None = None) -> None:
        if self._events is None:
            self._events = []
        # An exception recorded by end() is stamped with the end time, not after it.
        self._events.append((name, (self._t1 or _perf_ns()) + _clock_offset_ns, attributes or {}))

    def record_exception(self, exc: BaseException, *, set_status: bool = True) -> None:
        """Add an ``exception`` event (type, message, stack trace) and mark the span
        as an error unless ``set_status=False``."""
        try:
            stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        except Exception:  # a broken __str__ must not break tracing
            stack = ""
        etype = type(exc).__qualname__
        module = type(exc).__module__
        if module and module != "builtins":
            etype = f"{module}.{etype}"
        message = _safe_str(exc)
        self.add_event(
            "exception",
            {
                "exception.type": etype,
                "exception.message": message,
                "exception.stacktrace": stack,
            },
        )
        if set_status:
            self.set_status(STATUS_ERROR, f"{type(exc).__name__}: {message}" if message else type(exc).__name__)

    # -- the hot path: the C span has its own (csrc/speedups/span.c) ---------------------
    def end(
        self,
        result: BaseException | str | None = None,
        *,
        status: str | None = None,
        code: int | None = None,
        message: str | None = None,
    ) -> None:
        """End the span. ``result``: nothing (keep the status, ``ok`` by default), an
        exception (``error`` with its message) or a status string; ``status``/``code``/
        ``message`` set the status explicitly. Ending twice does nothing."""
        if self._t1:
            return
        self._t1 = _perf_ns()
        if code is not None and result is None and status is None and message is None:
            # end(code=200): the web adapters' common case, without set_status().
            st = self._status
            self._status = (STATUS_OK, code, "") if st is None else (st[0], code, st[2])
        elif result is not None or status is not None or code is not None or message is not None:
            self._apply_result(result, status, code, message)
        if self._token is not None:
            _leave(self, self._token)
            self._token = None  # the token holds the parent: free it while we queue
        _sink(self)  # type: ignore[arg-type]  # self is the pure-Python Span here

    # -- context manager ----------------------------------------------------------
    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end(exc)

    def _apply_result(
        self,
        result: BaseException | str | None,
        status: str | None,
        code: int | None,
        message: str | None,
    ) -> None:
        try:
            if isinstance(result, BaseException):
                self.record_exception(result)
            elif isinstance(result, str):
                self.set_status(result)
            if status is not None or code is not None or message is not None:
                self.set_status(status or self.status, message, code)
        except Exception:
            pass

    # -- context manager (the synchronous one is part of the hot path) -------------
    async def __aenter__(self: _S) -> _S:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)  # the C span's own __exit__ when built

    def __repr__(self) -> str:
        state = "ended" if self._t1 else "recording"
        return f"<Span {self.name!r} trace={self.trace_id} span={self.span_id} {self.kind} {state}>"


class PySpan(_SpanMethods):
    """The pure-Python span: what :class:`Span` is when the C speedups are not built
    (or ``INFRATRACE_PURE_PYTHON=1``). Use :class:`Span`, not this name."""

    # Few slots, lazily filled: each assignment on begin() costs ~15 ns.
    __slots__ = (
        "_ctx",  # None (flags 01, no tracestate) or (flags, tracestate) from the parent
        "_events",  # None or [(name, unix_ns, attributes)]
        "_pid",
        "_sid",
        "_status",  # None (ok, no message) or (status, code, message)
        "_t0",
        "_t1",
        "_tid",
        "_token",
        "attributes",
        "kind",
        "name",
    )

    def __init__(
        self,
        name: str,
        attributes: dict[str, Any],
        kind: str,
        parent: Parent | None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.attributes = attributes
        self._sid = getrandbits(64) or 1
        if parent is None:
            self._tid = getrandbits(128) or 1
            self._pid = 0
            self._ctx = None
        else:
            self._tid = parent._tid
            self._pid = parent._sid
            self._ctx = parent._ctx
        self._status = None
        self._events = None
        self._token = None
        self._t1 = 0
        self._t0 = _perf_ns()


if TYPE_CHECKING or _speedups is None:
    Span = PySpan
else:

    class Span(_speedups.SpanBase, _SpanMethods):
        """A span that is being recorded. Use as a context manager (sync or async) or
        end it with :meth:`end`. It is the current span from :func:`infratrace.begin`
        until it ends, so spans begun meanwhile in the same context become its children.

        Its ids, times, ``end()`` and ``with`` support are in C (csrc/speedups/span.c);
        the rest is :class:`_SpanMethods`."""

        __slots__ = ()

    if hasattr(os, "register_at_fork"):  # a forked child must not repeat the parent's ids
        os.register_at_fork(after_in_child=_speedups.reseed)


class NonRecordingSpan(_Identity):
    """A span that writes nothing but keeps its trace identity, so children and
    propagated headers stay in the right trace. Returned when a span is not recorded
    (per-request span budget exhausted, tracing shut down, a failing custom hook)."""

    __slots__ = ("_ctx", "_ended", "_pid", "_sid", "_tid", "_token", "name")

    kind = INTERNAL
    status: Status = STATUS_OK
    is_recording = False

    def __init__(self, name: str, parent: Parent | None, *, make_current: bool = True) -> None:
        self.name = name
        self._sid = getrandbits(64) or 1
        if parent is None:
            self._tid = getrandbits(128) or 1
            self._pid = 0
            self._ctx: tuple[int, str] | None = None
        else:
            self._tid = parent._tid
            self._pid = parent._sid
            self._ctx = parent._ctx
        self._ended = False
        self._token = _current.set(self) if make_current else None

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def attributes(self) -> dict[str, Any]:
        """A fresh empty dict each time: writes to it are discarded."""
        return {}

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        pass

    def set_status(self, status: str, message: str | None = None, code: int | None = None) -> None:
        pass

    def add_event(self, name: str, attributes: dict[str, Any] | None = None) -> None:
        pass

    def record_exception(self, exc: BaseException, *, set_status: bool = True) -> None:
        pass

    def end(
        self,
        result: BaseException | str | None = None,
        *,
        status: str | None = None,
        code: int | None = None,
        message: str | None = None,
    ) -> None:
        if self._ended:
            return
        self._ended = True
        if self._token is not None:
            _leave(self, self._token)
            self._token = None

    def __enter__(self) -> NonRecordingSpan:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.end()

    async def __aenter__(self) -> NonRecordingSpan:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.end()

    def __repr__(self) -> str:
        return f"<NonRecordingSpan {self.name!r} trace={self.trace_id} span={self.span_id}>"


def _leave(span: _SpanMethods | NonRecordingSpan, token: Token[Span | NonRecordingSpan | None]) -> None:
    """Stop ``span`` being the current span."""
    try:
        _current.reset(token)
    except ValueError:
        # Ended in another context (e.g. another asyncio task): only undo what this
        # span did to that context.
        if _current.get() is span:
            old = token.old_value
            _current.set(None if old is Token.MISSING else old)


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"
