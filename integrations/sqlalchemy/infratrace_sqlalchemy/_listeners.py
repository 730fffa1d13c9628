"""The engine event listeners.

``before_cursor_execute`` begins the query's span (when a span is current, or
``root_spans``) and keeps it on the statement's execution context;
``after_cursor_execute`` ends it when the driver's ``execute`` has returned;
``handle_error`` ends it as an error (SQLAlchemy calls it for an exception raised by
the driver, before the exception reaches the caller, who gets it unchanged).

An :class:`~sqlalchemy.ext.asyncio.AsyncEngine` runs its statements on its
``sync_engine`` inside greenlets that carry the calling task's context, so the current
span of the ``async`` code is the parent there too.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from infratrace import ConfigError
from infratrace.instrumentation import AnySpan, DatabaseInfo, begin_query_span, end_query_span

__all__ = ["instrument", "instrumented", "uninstrument"]

SPAN_ATTR = "_infratrace_span"  # on SQLAlchemy's execution context, from before to after


def database_info(engine: Engine, *, root_spans: bool, service: str) -> DatabaseInfo:
    """``db.system`` from the dialect, ``db.namespace``/``server.*`` from the URL."""
    url = engine.url
    return DatabaseInfo(
        engine.dialect.name,
        namespace=url.database,
        server_address=url.host,
        server_port=url.port,
        module="sqlalchemy",
        service=service,
        root_spans=root_spans,
    )


class _Listeners:
    """The three listeners for one target: an engine, or the ``Engine`` class (every
    engine). Bound methods kept here, so ``event.remove`` gets the same objects."""

    def __init__(self, target: Engine | type[Engine], *, root_spans: bool, service: str) -> None:
        self.target = target
        self.root_spans = root_spans
        self.service = service
        # One engine: its DatabaseInfo. Every engine: one per engine met (an engine made
        # by execution_options() is one of its own), None for an engine instrumented on
        # its own (its own listeners trace it).
        self.info = database_info(target, root_spans=root_spans, service=service) if isinstance(target, Engine) else None
        self.infos: weakref.WeakKeyDictionary[Engine, DatabaseInfo | None] = weakref.WeakKeyDictionary()
        # Connection id -> span, for the rare statement run without an execution context
        # (a connection runs one statement at a time).
        self.pending: dict[int, AnySpan] = {}
        self.handlers: tuple[tuple[str, Callable[..., Any], dict[str, Any]], ...] = (
            ("before_cursor_execute", self.before, {"retval": True}),
            ("after_cursor_execute", self.after, {}),
            ("handle_error", self.error, {}),
        )

    def listen(self) -> None:
        for name, handler, options in self.handlers:
            event.listen(self.target, name, handler, **options)

    def remove(self) -> None:
        for name, handler, _ in self.handlers:
            try:
                event.remove(self.target, name, handler)
            except Exception:  # already gone (the engine was disposed of and collected)
                pass

    def info_of(self, engine: Engine) -> DatabaseInfo | None:
        info = self.infos.get(engine, False)
        if info is False:
            own = _engines.get(engine)
            info = None if own is not None else database_info(engine, root_spans=self.root_spans, service=self.service)
            self.infos[engine] = info
        return info  # type: ignore[return-value]

    # -- the events ---------------------------------------------------------------------
    def before(self, conn: Any, cursor: Any, statement: Any, parameters: Any, context: Any, executemany: bool) -> Any:
        try:
            info = self.info
            if info is None:
                info = self.info_of(conn.engine)
                if info is None:
                    return statement, parameters
            if context is not None:
                if getattr(context, SPAN_ATTR, None) is not None:  # begun by our other listener
                    return statement, parameters
                span = begin_query_span(info, statement, batch_size=len(parameters) if executemany else None)
                if span is not None:
                    setattr(context, SPAN_ATTR, span)
            else:
                span = begin_query_span(info, statement)
                if span is not None:
                    self.pending[id(conn)] = span
        except Exception:
            pass
        return statement, parameters

    def after(self, conn: Any, cursor: Any, statement: Any, parameters: Any, context: Any, executemany: bool) -> None:
        end_query_span(self._take(context, conn))

    def error(self, exception_context: Any) -> None:
        """Ends the failed statement's span; returns nothing (SQLAlchemy raises the
        exception as it would have) and never raises (that would replace it)."""
        try:
            span = self._take(exception_context.execution_context, exception_context.connection)
            if span is not None:
                exc = exception_context.sqlalchemy_exception or exception_context.original_exception
                end_query_span(span, exc)
        except Exception:
            pass

    def _take(self, context: Any, conn: Any) -> AnySpan | None:
        try:
            if context is not None:
                span: AnySpan | None = getattr(context, SPAN_ATTR, None)
                if span is not None:
                    setattr(context, SPAN_ATTR, None)
                return span
            return self.pending.pop(id(conn), None) if self.pending else None
        except Exception:
            return None


_lock = threading.Lock()
_every_engine: _Listeners | None = None
_engines: weakref.WeakKeyDictionary[Engine, _Listeners] = weakref.WeakKeyDictionary()


def _engine_of(engine: Any) -> Engine:
    sync_engine = getattr(engine, "sync_engine", None)  # an AsyncEngine
    if isinstance(sync_engine, Engine):
        return sync_engine
    if isinstance(engine, Engine):
        return engine
    raise ConfigError("engine", repr(engine), "expected a SQLAlchemy Engine or AsyncEngine, or None for every engine")


def instrument(engine: Any = None, *, root_spans: bool = False, service: str = "") -> None:
    """Trace the statements of ``engine`` (an ``Engine`` or an ``AsyncEngine``), or of
    every engine when ``engine`` is ``None`` (listeners on the ``Engine`` class: engines
    made later are included).

    ``root_spans``: a statement run with no current span begins a trace of its own (by
    default it is not traced: start-up queries, migrations and scripts do not each make
    a trace). ``service``: the spans' ``service`` attribute. Instrumenting again
    replaces the previous options; an engine instrumented on its own keeps its own
    options when every engine is instrumented too. A bad argument raises
    :class:`infratrace.ConfigError` naming it."""
    global _every_engine
    if not isinstance(root_spans, bool):
        raise ConfigError("root_spans", root_spans, "expected True or False")
    if not isinstance(service, str):
        raise ConfigError("service", service, "expected a string")
    with _lock:
        if engine is None:
            if _every_engine is not None:
                _every_engine.remove()
            _every_engine = _Listeners(Engine, root_spans=root_spans, service=service)
            _every_engine.listen()
            return
        target = _engine_of(engine)
        previous = _engines.pop(target, None)
        if previous is not None:
            previous.remove()
        listeners = _engines[target] = _Listeners(target, root_spans=root_spans, service=service)
        listeners.listen()
        if _every_engine is not None:
            _every_engine.infos.clear()  # this engine is its own listeners' now


def uninstrument(engine: Any = None) -> None:
    """Remove the listeners: of ``engine`` (as given to :func:`instrument`), or all of
    them when ``engine`` is ``None`` (every engine's and each engine's own)."""
    global _every_engine
    with _lock:
        if engine is not None:
            listeners = _engines.pop(_engine_of(engine), None)
            if listeners is not None:
                listeners.remove()
            if _every_engine is not None:
                _every_engine.infos.clear()
            return
        for listeners in list(_engines.values()):
            listeners.remove()
        _engines.clear()
        if _every_engine is not None:
            _every_engine.remove()
            _every_engine = None


def instrumented(engine: Any = None) -> bool:
    """Whether ``engine``'s statements are traced (by its own listeners or every
    engine's); with ``None``, whether every engine is instrumented."""
    if engine is None:
        return _every_engine is not None
    return _every_engine is not None or _engine_of(engine) in _engines
