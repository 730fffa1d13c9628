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
from django.core.signals import got_request_exception
from django.http import HttpRequest
from django.http.response import HttpResponseBase

import infratrace
from infratrace import parse_traceparent
from infratrace._budget import SpanBudget
from infratrace._span import _current
from infratrace.web import finish_http_span, http_span_name, request_attributes, set_route

from ._options import DjangoOptions, django_options
from ._stream import AsyncTracedStream, TracedStream
from ._timings import MiddlewareTimings, RequestTimings
from ._views import view_path

__all__ = ["TraceMiddleware"]

STATE_ATTR = "_infratrace"
AnySpan = Any  # infratrace.Span | infratrace.NonRecordingSpan, or a custom hook's span


class RequestTrace:
    """What the middleware keeps on ``request._infratrace`` between its hooks."""

    __slots__ = ("budget", "exc", "method", "span", "timings", "token", "web", "web_token")

    def __init__(self, span: AnySpan, token: Any, budget: SpanBudget | None, method: str) -> None:
        self.span = span
        self.token = token
        self.budget = budget
        self.method = method
        self.web: AnySpan | None = None
        self.web_token: Any = None
        self.exc: BaseException | None = None
        self.timings: RequestTimings | None = None


class TraceMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.options: DjangoOptions = django_options()
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
            web = self.options.web
            path = request.path
            if web.excluded_paths and web.excluded(path):
                return None
            meta = request.META
            parent = None
            traceparent = meta.get("HTTP_TRACEPARENT")
            if traceparent:
                parent = parse_traceparent(traceparent, meta.get("HTTP_TRACESTATE", ""))
            method = request.method or "GET"
            host = meta.get("HTTP_HOST") or meta.get("SERVER_NAME")
            port = meta.get("SERVER_PORT")
            protocol = meta.get("SERVER_PROTOCOL", "")
            attrs = request_attributes(
                framework="django",
                method=method,
                path=path,
                scheme=request.scheme or "http",
                server_address=host.rsplit(":", 1)[0] if host and not host.endswith("]") else host,
                server_port=int(port) if port and str(port).isdigit() else None,
                client_address=meta.get("REMOTE_ADDR"),
                user_agent=meta.get("HTTP_USER_AGENT"),
                query=meta.get("QUERY_STRING"),
                protocol_version=protocol[5:] if protocol.startswith("HTTP/") else None,
                service=web.service,
            )
            if web.request_headers:
                attrs.update(web.header_attributes("request", request.headers.items()))
            span = infratrace.start_span(http_span_name(method, None), attrs, kind="server", parent=parent)
            trace = RequestTrace(span, _current.set(span), web.new_budget(), method)
            setattr(request, STATE_ATTR, trace)
            if self.timings is not None:
                trace.timings = self.timings.start()
            web.run_request_hook(span, request)
            return trace
        except Exception:  # tracing must never break the request
            return None

    # -- view -----------------------------------------------------------------------------
    def _process_view(self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any) -> None:
        trace: RequestTrace | None = getattr(request, STATE_ATTR, None)
        if trace is None or trace.web is not None:
            return
        try:
            match = request.resolver_match
            route = match.route if match is not None else None
            span = trace.span
            if route:
                set_route(span, trace.method, route)
            path = view_path(view)
            attrs = {"kind": "web", "target": path, "module": "django", "operation": path, "code.function.name": path}
            if self.options.web.service:
                attrs["service"] = self.options.web.service
            trace.web = infratrace.start_span(f"web:{path}", attrs, kind="internal", parent=span)
            trace.web_token = _current.set(trace.web)
        except Exception:
            pass

    async def _aprocess_view(self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any) -> None:
        self._process_view(request, view, args, kwargs)

    # -- response -------------------------------------------------------------------------
    def _finish(self, trace: RequestTrace, request: HttpRequest, response: Any) -> Any:
        span = trace.span
        try:
            self._end_web(trace)
            if trace.web is None:  # the view never ran: name from whatever resolved
                match = getattr(request, "resolver_match", None)
                route = match.route if match is not None else None
                if route:
                    set_route(span, trace.method, route)
            if trace.timings is not None:
                trace.timings.finish(span)
            web = self.options.web
            status = getattr(response, "status_code", None)
            if isinstance(response, HttpResponseBase):
                if web.response_headers:
                    span.set_attributes(web.header_attributes("response", response.items()))
                header = web.response_traceparent_header(span)
                if header is not None:
                    response.headers[header[0]] = header[1]
            web.run_response_hook(span, request, response)
            if getattr(response, "streaming", False) and self._defer_to_stream(trace, response, status):
                return response
            finish_http_span(span, status, trace.exc, trace.budget)
        except Exception:
            try:
                span.end()
            except Exception:
                pass
        finally:
            _detach(trace)
        return response

    def _fail(self, trace: RequestTrace, exc: BaseException) -> None:
        try:
            trace.exc = exc
            self._end_web(trace)
            finish_http_span(trace.span, 500, exc, trace.budget)
        except Exception:
            pass
        finally:
            _detach(trace)

    @staticmethod
    def _end_web(trace: RequestTrace) -> None:
        web = trace.web
        if web is not None and not web.ended:
            web.end(trace.exc) if trace.exc is not None else web.end()

    @staticmethod
    def _defer_to_stream(trace: RequestTrace, response: Any, status: int | None) -> bool:
        """End the span when the streamed body is done. ``False``: end it now."""
        span, exc, budget = trace.span, trace.exc, trace.budget
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


def _detach(trace: RequestTrace) -> None:
    """Undo this request's changes to the current span (the view's span may have been
    set in another context, e.g. behind a sync-only middleware; resetting the first
    token restores the value from before the request either way)."""
    try:
        _current.reset(trace.token)
    except (ValueError, RuntimeError):
        pass


def record_exception(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """``got_request_exception`` receiver: Django turns an unhandled exception into a
    500 response inside its handler (the middleware above only sees the response), and
    sends this signal while the exception is being handled."""
    trace: RequestTrace | None = getattr(request, STATE_ATTR, None)
    if trace is not None:
        exc = sys.exc_info()[1]
        if exc is not None:
            trace.exc = exc

