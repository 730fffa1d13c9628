# mypy: disable-error-code="import-untyped"
"""``infratrace_django.TraceMiddleware``: one ``http:<METHOD> <route>`` server span per
request and a ``web:<view>`` child around the view, under WSGI and ASGI.

Put it first in ``MIDDLEWARE`` so its span covers the other middleware. It is both
sync- and async-capable: Django calls ``__call__`` in the mode of the middleware below
it, and in async mode ``__call__`` returns the ``__acall__`` coroutine, so async views
never cost a thread hop."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.signals import got_request_exception, setting_changed
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from infratrace import baggage
from infratrace.instrumentation import (
    AnySpan,
    SpanBudget,
    attach,
    detach,
    finish_http_span,
    http_span_name,
    remote_baggage,
    remote_parent,
    request_attributes,
    set_current_span,
    set_route,
    start_span,
)

from ._db import apply_database_options, instrument_connection
from ._options import DjangoOptions, django_options
from ._stream import AsyncTracedStream, TracedStream
from ._timings import TIMINGS_ATTR, MiddlewareTimings
from ._views import view_path

__all__ = ["TraceMiddleware"]

STATE_ATTR = "_infratrace"
# Entries per cache below; beyond them, computed per request. The Host header and the
# method come from the client: the bounds keep junk values from growing the caches.
MAX_SERVERS = 256
MAX_VIEWS = 1024

# What the middleware keeps on ``request._infratrace`` between its hooks: a list (one
# allocation per request), indexed by these.
SPAN, TOKEN, BUDGET, METHOD, WEB, EXC, BAGGAGE = range(7)
# [span, token, budget, method, web span or None, exception or None, baggage token or None]
RequestTrace = list[Any]

# (method, scheme, host, port, protocol) -> (span name, attributes every such request shares)
ServerKey = tuple[str, str, Any, Any, Any]
# (view, route, method) -> (http span name, route attributes or None, web span name, web attributes)
ViewKey = tuple[Any, Any, str]
ViewEntry = tuple[str, dict[str, Any] | None, str, dict[str, Any]]


# Whether settings.SECURE_PROXY_SSL_HEADER is set (None: not read yet). Without it,
# ``request.scheme`` is ``request._get_scheme()``: reading the setting through
# LazySettings on every request cost more than the rest of the server-span key.
# setting_changed (sent by override_settings) makes the next request read it again.
_proxy_ssl_header: bool | None = None


def _read_proxy_ssl_header() -> bool:
    global _proxy_ssl_header
    from django.conf import settings

    _proxy_ssl_header = value = bool(settings.SECURE_PROXY_SSL_HEADER)
    return value


def _on_setting_changed(setting: str = "", **kwargs: Any) -> None:
    global _proxy_ssl_header
    if setting == "SECURE_PROXY_SSL_HEADER":
        _proxy_ssl_header = None


setting_changed.connect(_on_setting_changed, dispatch_uid="infratrace_django.middleware.setting_changed")


class TraceMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.options: DjangoOptions = django_options()
        apply_database_options(self.options, trace_connection_queries)  # also without the app installed
        self.is_async = iscoroutinefunction(get_response)
        # Django awaits process_view in async mode and adapts (with a thread hop) a
        # sync one; in sync mode it wraps a coroutine in async_to_sync. Offer the
        # flavour that matches the chain below us.
        self.process_view: Callable[..., Any]
        if self.is_async:
            markcoroutinefunction(self)
            self.process_view = self._aprocess_view
        else:
            self.process_view = self._process_view
        self.timings: MiddlewareTimings | None = None
        if self.options.middleware_timings:
            installed = MiddlewareTimings.install(get_response)
            if installed is not None:
                self.timings, self.get_response = installed
        # Decided once: the per-request path skips what is not configured.
        web = self._web = self.options.web
        self._excluded = bool(web.excluded_paths)
        self._request_headers = bool(web.request_headers)
        self._response_work = bool(web.response_headers or web.response_traceparent)
        self._request_hook = web.request_hook is not None
        self._response_hook = web.response_hook is not None
        self._span_budget = web.span_budget  # WebOptions.new_budget(), inlined per request
        # Computed once per distinct key (a handful in practice), copied per request.
        self._servers: dict[ServerKey, tuple[str, dict[str, Any]]] = {}
        self._views: dict[ViewKey, ViewEntry] = {}
        got_request_exception.connect(record_exception, dispatch_uid="infratrace_django.record_exception")

    # -- request ------------------------------------------------------------------------
    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        trace = self._begin(request)
        if trace is None:
            return self.get_response(request)
        try:
            response = self.get_response(request)
        except BaseException as exc:  # DEBUG_PROPAGATE_EXCEPTIONS, or a broken handler
            self._fail(trace, exc)
            raise
        return self._finish(trace, request, response)

    async def __acall__(self, request: HttpRequest) -> Any:
        trace = self._begin(request)
        if trace is None:
            return await self.get_response(request)
        try:
            response = await self.get_response(request)
        except BaseException as exc:
            self._fail(trace, exc)
            raise
        return self._finish(trace, request, response)

    def _begin(self, request: HttpRequest) -> RequestTrace | None:
        try:
            path = request.path
            if self._excluded and self._web.excluded(path):
                return None
            meta = request.META
            get = meta.get
            traceparent = get("HTTP_TRACEPARENT")
            parent = remote_parent(traceparent, get("HTTP_TRACESTATE")) if traceparent else None
            method = request.method or "GET"
            proxied = _proxy_ssl_header
            if proxied is None:
                proxied = _read_proxy_ssl_header()
            # Django's own request.scheme does exactly this when no proxy header is set.
            scheme = request.scheme if proxied else request._get_scheme()
            key = (
                method,
                scheme or "http",
                get("HTTP_HOST") or get("SERVER_NAME"),
                get("SERVER_PORT"),
                get("SERVER_PROTOCOL", ""),
            )
            server = self._servers.get(key)
            if server is None:
                server = self._server_entry(key)
            name, shared = server
            attrs = shared.copy()  # "target" and "url.path" are in it already: same order
            attrs["target"] = attrs["url.path"] = path
            if self._web.record_query:  # off by default: query strings carry tokens
                value = self._web.query_attribute(get("QUERY_STRING", ""))
                if value:
                    attrs["url.query"] = value
            value = get("REMOTE_ADDR")
            if value:
                attrs["client.address"] = value
            value = get("HTTP_USER_AGENT")
            if value:
                attrs["user_agent.original"] = value
            if self._request_headers:
                attrs.update(self._web.header_attributes("request", request.headers.items()))
            span = start_span(name, attrs, kind="server", parent=parent)
            limit = self._span_budget
            # attach, not set_current_span: the middleware may not run in a context of
            # its own (a WSGI server thread reuses one for every request it serves).
            trace = [span, attach(span), SpanBudget(limit).activate() if limit > 0 else None, method, None, None, None]
            value = get("HTTP_BAGGAGE")
            if value:  # the caller's baggage, for this request (reset by _detach)
                carried = remote_baggage(value)
                if carried:
                    trace[BAGGAGE] = baggage.attach(carried)
            request._infratrace = trace  # STATE_ATTR
            if self.timings is not None:
                request._infratrace_timings = self.timings.start()
            if self._request_hook:
                self._web.run_request_hook(span, request)
            return trace
        except Exception:  # tracing must never break the request
            return None

    def _server_entry(self, key: ServerKey) -> tuple[str, dict[str, Any]]:
        """The span name and the attributes shared by requests with this method,
        scheme, host, port and protocol (the per-request ones are added to a copy)."""
        method, scheme, host, port, protocol = key
        protocol = protocol or ""
        attrs = request_attributes(
            framework="django",
            method=method,
            path="",
            scheme=scheme,
            server_address=host.rsplit(":", 1)[0] if host and not host.endswith("]") else host,
            server_port=int(port) if port and str(port).isdigit() else None,
            protocol_version=protocol[5:] if protocol.startswith("HTTP/") else None,
            service=self._web.service,
        )
        entry = (http_span_name(method, None), attrs)
        if len(self._servers) < MAX_SERVERS:
            self._servers[key] = entry
        return entry

    # -- view -----------------------------------------------------------------------------
    def _process_view(self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any) -> None:
        trace: RequestTrace | None = getattr(request, STATE_ATTR, None)
        if trace is None or trace[WEB] is not None:
            return
        try:
            match = request.resolver_match
            key = (view, match.route if match is not None else None, trace[METHOD])
            try:
                entry = self._views.get(key)
            except TypeError:  # an unhashable view
                entry = None
            if entry is None:
                entry = self._view_entry(key)
            http_name, route_attrs, web_name, web_attrs = entry
            span = trace[SPAN]
            if route_attrs is not None:  # what set_route does, precomputed
                span.name = http_name
                span.set_attributes(route_attrs)
            web = trace[WEB] = start_span(web_name, web_attrs, kind="internal", parent=span)  # the tracer copies it
            # No token to keep: detaching the request's own token (_detach) restores
            # what was current before the request, whichever context this ran in.
            set_current_span(web)
        except Exception:
            pass

    def _view_entry(self, key: ViewKey) -> ViewEntry:
        view, route, method = key
        path = view_path(view)
        attrs = {"kind": "web", "target": path, "module": "django", "operation": path, "code.function.name": path}
        if self._web.service:
            attrs["service"] = self._web.service
        entry: ViewEntry = (
            http_span_name(method, route),
            {"http.route": route, "target": route} if route else None,
            f"web:{path}",
            attrs,
        )
        try:
            if len(self._views) < MAX_VIEWS:
                self._views[key] = entry
        except TypeError:
            pass
        return entry

    async def _aprocess_view(self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any) -> None:
        self._process_view(request, view, args, kwargs)

    # -- response -------------------------------------------------------------------------
    def _finish(self, trace: RequestTrace, request: HttpRequest, response: Any) -> Any:
        span = trace[SPAN]
        try:
            web = trace[WEB]
            if web is not None:
                if not web.ended:
                    exc = trace[EXC]
                    web.end(exc) if exc is not None else web.end()
            else:  # the view never ran: name from whatever resolved
                match = getattr(request, "resolver_match", None)
                route = match.route if match is not None else None
                if route:
                    set_route(span, trace[METHOD], route)
            if self.timings is not None:
                timings = getattr(request, TIMINGS_ATTR, None)
                if timings is not None:
                    timings.finish(span)
            status = getattr(response, "status_code", None)
            if self._response_work and isinstance(response, HttpResponseBase):
                web_options = self._web
                if web_options.response_headers:
                    span.set_attributes(web_options.header_attributes("response", response.items()))
                header = web_options.response_traceparent_header(span)
                if header is not None:
                    response.headers[header[0]] = header[1]
            if self._response_hook:
                self._web.run_response_hook(span, request, response)
            if not (getattr(response, "streaming", False) and self._defer_to_stream(trace, response, status)):
                finish_http_span(span, status, trace[EXC], trace[BUDGET])
                # finish_http_span deactivated the budget: _detach need not.
                trace[BUDGET] = None
        except Exception:
            try:
                span.end()
            except Exception:
                pass
        finally:
            if trace[BUDGET] is None and trace[BAGGAGE] is None:  # _detach, inlined for the common path
                try:
                    detach(trace[TOKEN])
                except RuntimeError:
                    pass
            else:
                _detach(trace)
        return response

    def _fail(self, trace: RequestTrace, exc: BaseException) -> None:
        try:
            trace[EXC] = exc
            if trace[WEB] is not None:
                _end_web(trace[WEB], exc)
            finish_http_span(trace[SPAN], 500, exc, trace[BUDGET])
        except Exception:
            pass
        finally:
            _detach(trace)

    @staticmethod
    def _defer_to_stream(trace: RequestTrace, response: Any, status: int | None) -> bool:
        """End the span when the streamed body is done. ``False``: end it now."""
        span, exc, budget = trace[SPAN], trace[EXC], trace[BUDGET]
        if budget is not None:
            budget.deactivate()  # in this context; finish_http_span still counts its drops

        def finish(stream_exc: BaseException | None, complete: bool) -> None:
            if not complete and stream_exc is None:
                span.set_attribute("infratrace.body_incomplete", True)
            finish_http_span(span, status, stream_exc or exc, budget)

        if getattr(response, "file_to_stream", None) is not None:
            # A FileResponse: replacing its content would lose wsgi.file_wrapper
            # (sendfile). Its closers run when the server closes the response.
            closers = getattr(response, "_resource_closers", None)
            if not isinstance(closers, list):
                return False
            closers.append(lambda: finish(None, True))
            return True
        if getattr(response, "is_async", False):
            response.streaming_content = AsyncTracedStream(response.streaming_content, span, finish)
        else:
            response.streaming_content = TracedStream(response.streaming_content, span, finish)
        return True


def _end_web(web: AnySpan, exc: BaseException | None) -> None:
    if not web.ended:
        web.end(exc) if exc is not None else web.end()


def _detach(trace: RequestTrace) -> None:
    """Undo this request's changes to the current span (the view's span may have been
    set in another context, e.g. behind a sync-only middleware; resetting the first
    token restores the value from before the request either way) and to the span
    budget — whatever failed on the way: under WSGI the next request on this thread
    runs in the same context, and a leaked budget would refuse its spans."""
    budget = trace[BUDGET]
    if budget is not None:
        budget.deactivate()  # a no-op when finish_http_span already did it
    try:
        detach(trace[TOKEN])
    except RuntimeError:  # the token was used already
        pass
    if trace[BAGGAGE] is not None:
        baggage.detach(trace[BAGGAGE])


def record_exception(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """``got_request_exception`` receiver: Django turns an unhandled exception into a
    500 response inside its handler (the middleware above only sees the response), and
    sends this signal while the exception is being handled."""
    trace: RequestTrace | None = getattr(request, STATE_ATTR, None)
    if trace is not None:
        exc = sys.exc_info()[1]
        if exc is not None:
            trace[EXC] = exc


def trace_connection_queries(sender: Any, connection: Any = None, **kwargs: Any) -> None:
    """``connection_created`` receiver: database spans for the new connection (see
    ``_db``). Kept in this module with ``record_exception``: signal tracing gives
    infratrace's own receivers no ``event:`` span."""
    if connection is not None:
        instrument_connection(connection)
