"""The span: one timed unit of work, its ids, its status and the current-span context.

This is the hot path of the whole library, and it is plain Python. While it runs, a
span holds integers and monotonic-clock readings only; hex ids, wall-clock times and
safe attribute values are made once, later, on the pipeline's thread
(:func:`infratrace._spandata.snapshot`). Ending a span hands it to the one sink the
tracer installed (:func:`set_sink`): an append to a queue, no lock, no I/O.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from contextvars import ContextVar, Token
from random import getrandbits
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar, Union

from . import _spandata
from ._sampling import LocalTrace
from ._spandata import safe_str as _safe_str

__all__ = [
    "KINDS",
    "NonRecordingSpan",
    "Span",
    "SpanContext",
    "SpanSink",
    "attach",
    "current_span",
    "detach",
    "set_sink",
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


class _Identity:
    """Ids and propagation fields shared by spans, non-recording spans and contexts."""

    __slots__ = ()
    _tid: int
    _sid: int
    _pid: int
    # A span's: the LocalTrace its local root began (its connections' sampling
    # decisions, the trace flags and tracestate), shared by the local trace's spans.
    # A remote context's: None (sampled, no tracestate) or (flags, tracestate).
    _ctx: LocalTrace | tuple[int, str] | None

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
        """The W3C trace flags this span propagates (bit 0: sampled)."""
        ctx = self._ctx
        if ctx is None:
            return 1
        return ctx[0] if ctx.__class__ is tuple else ctx.flags  # type: ignore[union-attr]

    @property
    def tracestate(self) -> str:
        ctx = self._ctx
        if ctx is None:
            return ""
        return ctx[1] if ctx.__class__ is tuple else ctx.tracestate  # type: ignore[union-attr]

    @property
    def context(self) -> SpanContext:
        return SpanContext(self._tid, self._sid, self.flags, self.tracestate, False)


class SpanContext(_Identity):
    """The identity of a span that lives elsewhere (another process, a message header).

    Produced by :func:`infratrace.extract`; pass it as ``parent=`` to continue a trace."""

    __slots__ = ("_ctx", "_sid", "_tid", "is_remote")
    _pid = 0  # a context is not a span of ours: it has no parent here

    def __init__(self, trace_id: int, span_id: int, flags: int = 1, tracestate: str = "", is_remote: bool = True) -> None:
        self._tid = trace_id
        self._sid = span_id
        self._ctx = None if (flags == 1 and not tracestate) else (flags, tracestate)
        self.is_remote = is_remote

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 1)

    def __repr__(self) -> str:
        return f"SpanContext(trace_id={self.trace_id}, span_id={self.span_id}, flags={self.flags:02x})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SpanContext) and (self._tid, self._sid, self._ctx) == (other._tid, other._sid, other._ctx)

    def __hash__(self) -> int:
        return hash((self._tid, self._sid))


Parent = Union["Span", "NonRecordingSpan", SpanContext]
AnySpan = Union["Span", "NonRecordingSpan"]
_S = TypeVar("_S", bound="Span")

_current: ContextVar[Span | NonRecordingSpan | None] = ContextVar("infratrace_current_span", default=None)
CurrentToken = Token["Span | NonRecordingSpan | None"]


def current_span() -> Span | NonRecordingSpan | None:
    """The span that new spans in this thread / asyncio task become children of."""
    return _current.get()


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


class SpanSink(Protocol):
    """Where spans go: the tracer's pipeline. ``local_root`` is called when a span
    begins a local trace (no parent, or a parent from elsewhere with its trace flags and
    tracestate) and returns the trace's :class:`LocalTrace` (its sampling decisions);
    ``append`` takes each ended span. Neither may block or raise."""

    def local_root(self, span: Span, flags: int | None, tracestate: str) -> LocalTrace: ...

    def append(self, span: Span) -> None: ...


class _Discard:
    def local_root(self, span: Span, flags: int | None, tracestate: str) -> LocalTrace:
        return LocalTrace.kept(None, -1, flags, tracestate, span._sid)

    def append(self, span: Span) -> None:
        pass


# The one sink; the tracer points it at its pipeline (set_sink). Bound method cached:
# ending a span costs one call here.
_append: Callable[[Span], None] = _Discard().append
_local_root: Callable[[Span, int | None, str], LocalTrace] = _Discard().local_root


def set_sink(sink: SpanSink) -> None:
    """Send every span ended from now on to ``sink.append``, and every local root
    begun from now on to ``sink.local_root``."""
    global _append, _local_root
    _local_root = sink.local_root
    _append = sink.append


def _http_error(kind: str, code: int) -> bool:
    """``end(code=...)`` with no status set: an HTTP status that is an error under
    OpenTelemetry's HTTP conventions — 5xx on a server span, 4xx and 5xx on a client
    span. On other kinds a code is just a code."""
    if kind == SERVER:
        return 500 <= code <= 599
    return kind == CLIENT and 400 <= code <= 599


class Span(_Identity):
    """A span being recorded. Use it as a context manager (sync or async) or end it with
    :meth:`end`. Begun by :func:`infratrace.begin`, it is the current span until it
    ends, so spans begun meanwhile in the same context become its children."""

    # Few slots, lazily filled: each assignment in __init__ costs on every span.
    __slots__ = (
        "_ctx",
        "_events",  # None or [(name, perf_ns, attributes)]
        "_pid",
        "_sid",
        "_status",  # None (ok, no message) or (status, code, message)
        "_t0",  # time.perf_counter_ns() readings; 0 = not ended
        "_t1",
        "_tid",
        "_token",  # the current-span token while this span is current
        "attributes",
        "kind",
        "name",
    )
    name: str
    kind: str
    attributes: dict[str, Any]
    _ctx: LocalTrace  # always: a span belongs to a local trace
    _t0: int
    _t1: int
    _status: tuple[Status, int, str] | None
    _events: list[tuple[str, int, dict[str, Any]]] | None
    _token: CurrentToken | None

    def __init__(self, name: str, attributes: dict[str, Any], kind: str, parent: Parent | None, start: int = 0) -> None:
        self.name = name
        self.kind = kind
        self.attributes = attributes
        self._sid = getrandbits(64) or 1
        if parent is None:  # a new trace: this span is its local root
            self._tid = getrandbits(128) or 1
            self._pid = 0
            self._ctx = _local_root(self, None, "")
        else:
            self._tid = parent._tid
            self._pid = parent._sid
            ctx = parent._ctx
            # A parent of this process: its local trace's decisions. One from elsewhere:
            # this span is a local root, decided here (honouring the parent's flags).
            self._ctx = ctx if ctx.__class__ is LocalTrace else _local_root(self, parent.flags, parent.tracestate)
        self._status = None
        self._events = None
        self._token = None
        self._t1 = 0
        self._t0 = start or _perf_ns()

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
        """``(name, unix_ns, attributes)`` for each event."""
        offset = _spandata._clock_offset_ns
        return [(name, ts + offset, attrs) for name, ts, attrs in self._events or ()]

    # -- times (Unix nanoseconds) ---------------------------------------------------
    @property
    def start_time_unix_nano(self) -> int:
        return self._t0 + _spandata._clock_offset_ns

    @property
    def end_time_unix_nano(self) -> int:
        return (self._t1 or _perf_ns()) + _spandata._clock_offset_ns

    @property
    def duration_ns(self) -> int:
        return (self._t1 or _perf_ns()) - self._t0

    # -- mutation (ignored once the span has ended: the pipeline owns it then) -------
    def set_attribute(self, key: str, value: Any) -> None:
        if not self._t1:
            self.attributes[key] = value

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        if not self._t1:
            self.attributes.update(attributes)

    def set_status(self, status: str, message: str | None = None, code: int | None = None) -> None:
        """Set ``status`` (``"ok"`` or ``"error"``), with an optional message and code
        (an error without a code gets code 1)."""
        if self._t1:
            return
        new: Status = STATUS_ERROR if status == STATUS_ERROR else STATUS_OK
        old_code, old_message = self.status_code, self.status_message
        if code is None:
            code = old_code if old_code else (1 if new == STATUS_ERROR else 0)
        self._status = (new, int(code), old_message if message is None else _safe_str(message))

    def add_event(self, name: str, attributes: dict[str, Any] | None = None) -> None:
        if self._t1:
            return
        if self._events is None:
            self._events = []
        self._events.append((name, _perf_ns(), dict(attributes) if attributes else {}))

    def record_exception(self, exc: BaseException, *, set_status: bool = True) -> None:
        """Add an ``exception`` event (type, message, stack trace) and mark the span as
        an error unless ``set_status=False``."""
        try:
            stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        except Exception:  # a broken __str__ must not break tracing
            stack = ""
        etype = type(exc).__qualname__
        module = type(exc).__module__
        if module and module != "builtins":
            etype = f"{module}.{etype}"
        message = _safe_str(exc)
        self.add_event("exception", {"exception.type": etype, "exception.message": message, "exception.stacktrace": stack})
        if set_status:
            self.set_status(STATUS_ERROR, f"{type(exc).__name__}: {message}" if message else type(exc).__name__)

    # -- the hot path ------------------------------------------------------------------
    def end(
        self,
        result: BaseException | str | None = None,
        *,
        status: str | None = None,
        code: int | None = None,
        message: str | None = None,
        end_time: int | None = None,
    ) -> None:
        """End the span. ``result``: nothing (keep the status, ``ok`` by default), an
        exception (``error`` with its message) or a status string; ``status``/``code``/
        ``message`` set the status explicitly. ``end_time`` (Unix ns, from
        :func:`infratrace.instrumentation.now_ns`) ends it at a time already past.
        Ending twice does nothing."""
        if self._t1:
            return
        if result is not None or status is not None or message is not None:
            self._apply_result(result, status, code, message)
        elif code is not None:  # end(code=200): the web adapters' common case
            st = self._status
            if st is not None:  # a status set before: only the code changes
                self._status = (st[0], code, st[2])
            elif code >= 400 and _http_error(self.kind, code):
                self._status = (STATUS_ERROR, code, "")
            else:
                self._status = (STATUS_OK, code, "")
        self._t1 = _perf_ns() if end_time is None else max(end_time - _spandata._clock_offset_ns, self._t0)
        token = self._token
        if token is not None:
            self._token = None  # the token holds the parent: free it while we queue
            try:
                _current.reset(token)
            except ValueError:
                _leave_elsewhere(self, token)
        _append(self)

    def _apply_result(
        self, result: BaseException | str | None, status: str | None, code: int | None, message: str | None
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

    # -- context managers -----------------------------------------------------------
    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is not None or self._t1:
            self.end(exc)
            return
        # end() without a result, inlined: leaving a ``with`` block is most spans' end.
        self._t1 = _perf_ns()
        token = self._token
        if token is not None:
            self._token = None
            try:
                _current.reset(token)
            except ValueError:
                _leave_elsewhere(self, token)
        _append(self)

    async def __aenter__(self: _S) -> _S:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        state = "ended" if self._t1 else "recording"
        return f"<Span {self.name!r} trace={self.trace_id} span={self.span_id} {self.kind} {state}>"


class NonRecordingSpan(_Identity):
    """A span that writes nothing but keeps its trace identity, so children and
    propagated headers stay in the right trace. Returned when a span is not recorded
    (the request's span budget is spent, a failing custom hook)."""

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
            self._ctx: LocalTrace | tuple[int, str] | None = None
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
        end_time: int | None = None,
    ) -> None:
        if self._ended:
            return
        self._ended = True
        token = self._token
        if token is not None:
            self._token = None
            try:
                _current.reset(token)
            except ValueError:
                _leave_elsewhere(self, token)

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


def _leave_elsewhere(span: Span | NonRecordingSpan, token: CurrentToken) -> None:
    """``span`` ends in another context than the one it was made current in (e.g.
    another asyncio task): only undo what it did to this context."""
    if _current.get() is span:
        old = token.old_value
        _current.set(None if old is Token.MISSING else old)
