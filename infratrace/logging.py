"""Trace ids in log records, so logs and traces can be joined.

stdlib ``logging``::

    import infratrace.logging
    infratrace.logging.instrument()
    logging.basicConfig(format="%(asctime)s %(levelname)s [%(trace_id)s %(span_id)s] %(message)s")

Every record then carries ``trace_id`` and ``span_id`` (lowercase hex, ``""`` outside
a span) and ``trace_sampled`` (the trace's W3C sampled flag; ``False`` outside a
span), whatever logger, handler or formatter it goes through, so ``%(trace_id)s`` never
fails. It is a log record factory (``logging.setLogRecordFactory``), not a filter: a
filter works only on the handlers it was added to and is easily forgotten on one. The
web adapters turn it on with their ``log_correlation`` option.

With ``exception_events=True``, a record logged with exception information inside a
span (``logger.exception(...)``, ``exc_info=True``) also adds an ``exception`` event
to that span (type, message, stack trace, and the log message as ``log.message``);
the span's status is left as it is: a logged exception may have been handled.

structlog: add :func:`structlog_processor` to the processors, before the renderer; it
adds the same three keys to events logged inside a span.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, MutableMapping
from typing import Any

from ._span import Span, _current

__all__ = ["instrument", "is_instrumented", "structlog_processor", "uninstrument"]

_lock = threading.Lock()
_installed: _RecordFactory | None = None


class _RecordFactory:
    """Wraps the record factory in place when :func:`instrument` ran."""

    __slots__ = ("active", "exception_events", "previous")

    def __init__(self, previous: Callable[..., logging.LogRecord], exception_events: bool) -> None:
        self.previous = previous
        self.exception_events = exception_events
        self.active = True

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        if not self.active:  # uninstrumented while another factory wrapped this one
            return record
        try:
            span = _current.get()
            if span is None:
                record.trace_id = record.span_id = ""
                record.trace_sampled = False
                return record
            record.trace_id = "%032x" % span._tid
            record.span_id = "%016x" % span._sid
            record.trace_sampled = bool(span.flags & 1)
            if self.exception_events and record.exc_info and span.__class__ is Span:
                _exception_event(span, record)
        except Exception:  # logging must never fail because of tracing: %(trace_id)s still formats
            if not hasattr(record, "trace_sampled"):
                record.trace_id = record.span_id = ""
                record.trace_sampled = False
        return record


def _exception_event(span: Span, record: logging.LogRecord) -> None:
    exc_info = record.exc_info
    exc = exc_info[1] if isinstance(exc_info, tuple) else None
    if not isinstance(exc, BaseException):
        return
    span.record_exception(exc, set_status=False)
    events = span._events
    if events:  # the event just added: name the log line that reported it
        attributes = events[-1][2]
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        attributes["log.message"] = message
        attributes["log.logger"] = record.name


def instrument(*, exception_events: bool = False) -> None:
    """Add ``trace_id``, ``span_id`` and ``trace_sampled`` to every log record made
    from now on (see the module's text). Calling it again only changes
    ``exception_events``."""
    global _installed
    with _lock:
        if _installed is not None and _installed.active:
            _installed.exception_events = exception_events
            return
        factory = _RecordFactory(logging.getLogRecordFactory(), exception_events)
        logging.setLogRecordFactory(factory)
        _installed = factory


def uninstrument() -> None:
    """Stop adding the fields. The previous record factory is put back when ours is
    still the one installed; when another was installed over ours since, ours stays in
    its chain but passes records through untouched."""
    global _installed
    with _lock:
        factory, _installed = _installed, None
        if factory is None:
            return
        factory.active = False
        if logging.getLogRecordFactory() is factory:
            logging.setLogRecordFactory(factory.previous)


def is_instrumented() -> bool:
    return _installed is not None and _installed.active


def structlog_processor(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: adds ``trace_id``, ``span_id`` and ``trace_sampled`` to
    an event logged inside a span (keys the event already has are kept)."""
    try:
        span = _current.get()
        if span is not None:
            event_dict.setdefault("trace_id", "%032x" % span._tid)
            event_dict.setdefault("span_id", "%016x" % span._sid)
            event_dict.setdefault("trace_sampled", bool(span.flags & 1))
    except Exception:
        pass
    return event_dict
