# mypy: disable-error-code="import-untyped"
"""``db:<operation> <table>`` spans for every query Django runs, through Django's
documented hook, ``connection.execute_wrapper``: no cursor is patched.

One :class:`QueryTracer` is put in the ``execute_wrappers`` of each database
connection object (a ``DatabaseWrapper``: one per alias and thread) when it connects —
the ``connection_created`` signal, received by :func:`~infratrace_django.middleware.trace_connection_queries`
— and on the ones that exist when tracing is switched on. From then on it sees every
``execute``/``executemany`` of that connection, ORM or raw cursor, in a request or not
(a Celery task, a management command): a query begun while a span is current is that
span's ``client`` child; with no current span it is not traced unless
``database_root_spans`` is on. The span ends when the driver's ``execute`` returns; a
query that raises is an error span, and the exception goes on unchanged.

``INFRATRACE_DJANGO["database_spans"] = False`` turns it off: the wrappers leave the
connections of the thread that applies the setting, and the ones elsewhere pass
queries straight through.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from infratrace.instrumentation import DatabaseInfo, begin_query_span, end_query_span

from ._options import DjangoOptions

__all__ = ["QueryTracer", "apply_database_options", "instrument_connection", "uninstrument_connection"]

SIGNAL_UID = "infratrace_django.database_spans"


class _Settings:
    """What the wrappers read on each query; replaced as a whole when the options change,
    so a wrapper notices with one identity check."""

    __slots__ = ("enabled", "infos", "lock", "root_spans", "service")

    def __init__(self, enabled: bool, root_spans: bool, service: str) -> None:
        self.enabled = enabled
        self.root_spans = root_spans
        self.service = service
        self.infos: dict[tuple[str, ...], DatabaseInfo] = {}  # one per alias and database
        self.lock = threading.Lock()

    def same(self, enabled: bool, root_spans: bool, service: str) -> bool:
        return (self.enabled, self.root_spans, self.service) == (enabled, root_spans, service)

    def info(self, connection: Any) -> DatabaseInfo:
        """The :class:`DatabaseInfo` of a connection's alias, shared by its threads (and
        with it the cache of sanitized statements)."""
        settings = connection.settings_dict
        key = (
            str(connection.alias),
            str(connection.vendor),
            str(settings.get("NAME") or ""),
            str(settings.get("HOST") or ""),
            str(settings.get("PORT") or ""),
        )
        info = self.infos.get(key)
        if info is None:
            with self.lock:
                info = self.infos.get(key)
                if info is None:
                    info = self.infos[key] = DatabaseInfo(
                        connection.vendor,
                        namespace=key[2],
                        server_address=key[3] if not key[3].startswith("/") else None,  # a socket directory
                        server_port=key[4],
                        module="django",
                        service=self.service,
                        root_spans=self.root_spans,
                    )
        return info


_settings = _Settings(False, False, "")


class QueryTracer:
    """The execute wrapper of one connection: ``wrapper(execute, sql, params, many,
    context)`` as Django calls it."""

    __slots__ = ("info", "settings")

    def __init__(self) -> None:
        self.settings: _Settings | None = None
        self.info: DatabaseInfo | None = None

    def __call__(self, execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: dict[str, Any]) -> Any:
        settings = _settings
        if not settings.enabled:
            return execute(sql, params, many, context)
        info = self.info
        if self.settings is not settings or info is None:
            try:
                info = self.info = settings.info(context["connection"])
                self.settings = settings
            except Exception:
                return execute(sql, params, many, context)
        span = begin_query_span(info, sql, batch_size=_batch_size(params) if many else None)
        if span is None:
            return execute(sql, params, many, context)
        try:
            result = execute(sql, params, many, context)
        except BaseException as exc:
            end_query_span(span, exc)
            raise
        end_query_span(span)
        return result

    def __repr__(self) -> str:
        return f"<infratrace_django.QueryTracer {self.info!r}>"


def _batch_size(params: Any) -> int | None:
    try:
        return len(params)  # a list of parameter sets; a generator has no length
    except Exception:
        return None


def instrument_connection(connection: Any) -> None:
    """Put a :class:`QueryTracer` in ``connection.execute_wrappers`` (once)."""
    try:
        wrappers = connection.execute_wrappers
        if not any(isinstance(wrapper, QueryTracer) for wrapper in wrappers):
            wrappers.append(QueryTracer())
    except Exception:
        pass


def uninstrument_connection(connection: Any) -> None:
    try:
        wrappers = connection.execute_wrappers
        wrappers[:] = [wrapper for wrapper in wrappers if not isinstance(wrapper, QueryTracer)]
    except Exception:
        pass


def apply_database_options(options: DjangoOptions, receiver: Callable[..., Any]) -> None:
    """Switch database spans on or off as ``options`` say: ``receiver`` (the
    ``connection_created`` receiver) connected or disconnected, and the wrapper added to
    or removed from the connection objects this thread already has. Idempotent: the
    app's ``ready()`` and every ``TraceMiddleware`` call it."""
    global _settings
    from django.db import connections
    from django.db.backends.signals import connection_created

    enabled, root_spans, service = options.database_spans, options.database_root_spans, options.web.service
    if not _settings.same(enabled, root_spans, service):
        _settings = _Settings(enabled, root_spans, service)
    if enabled:
        connection_created.connect(receiver, dispatch_uid=SIGNAL_UID)
    else:
        connection_created.disconnect(dispatch_uid=SIGNAL_UID)
    try:
        existing = connections.all(initialized_only=True)
    except Exception:  # a broken DATABASES setting: Django reports it where it is used
        return
    for connection in existing:
        instrument_connection(connection) if enabled else uninstrument_connection(connection)
