"""The WSGI middleware around ``app.wsgi_app``: one ``http:`` server span per request,
from the moment Flask gets the environ until the last byte of the body has been
handed to the server (or the server closed the body), so errors Flask does not catch
and streamed responses are covered.

Each request runs in a copy of the caller's ``contextvars`` context. The ``http:`` span
is current inside it (so the view's spans are its children), and nothing leaks into
the server thread when the call returns with the body unsent. The body is iterated in
the caller's own context, with the span (and the request's span budget) made current
for each chunk only: a ``stream_with_context`` generator's spans are children too, and
the Flask contexts it pushes are pushed and popped in the context the caller pops
preserved contexts in (``with client:``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar, copy_context
from operator import itemgetter
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from infratrace import baggage
from infratrace.instrumentation import (
    AnySpan,
    SpanBudget,
    WebOptions,
    attach,
    detach,
    finish_http_span,
    http_span_name,
    remote_baggage,
    remote_parent,
    report_budget,
    request_attributes,
    set_current_span,
    start_span,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["RequestTrace", "TraceMiddleware", "current_request"]

ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]

# Set inside the request's own (copied) context, so it needs no reset.
_request: ContextVar[RequestTrace | None] = ContextVar("infratrace_flask_request", default=None)


def current_request() -> RequestTrace | None:
    """The traced request being handled in this context (``None``: not traced)."""
    return _request.get()


class OptionsSource(Protocol):
    """Where the middleware reads the app's current options (re-``init_app`` swaps
    them), and how it readies the app at its first request."""

    @property
    def options(self) -> WebOptions: ...

    @property
    def views_wrapped(self) -> bool: ...

    def wrap_views(self) -> None: ...


class RequestTrace:
    """One traced request: its ``http:`` span, status, route and span budget.

    Created once per request and touched by every hook, so it holds slots only and
    each per-request method does its work in one call without helpers."""

    __slots__ = ("_start_response", "budget", "exc", "finished", "method", "options", "route", "span", "status_code", "streamed")

    def __init__(
        self,
        span: AnySpan,
        budget: SpanBudget | None,
        options: WebOptions,
        method: str,
        start_response: StartResponse,
    ) -> None:
        self.span = span
        self.budget = budget
        self.options = options
        self.method = method
        self.status_code: int | None = None
        self.route: str | None = None
        self.exc: BaseException | None = None
        self.finished = False
        self.streamed: bool | None = None  # known once Flask has the final response
        self._start_response = start_response

    def set_route(self, route: str) -> None:
        """The matched URL rule (``/users/<int:user_id>``) names the span (what
        :func:`infratrace.instrumentation.set_route` does, with the name and attributes
        made once per method and rule)."""
        self.route = route
        found = _routes.get((self.method, route))
        if found is None:
            found = _route_entry(self.method, route)
        span = self.span
        span.name, attrs = found
        span.attributes.update(attrs)  # not ended yet: no set_attributes() call needed

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None) -> Any:
        """The server's ``start_response``, recording the status code."""
        try:
            self.status_code = int(status[:3])
        except Exception:
            pass
        if exc_info is None:
            return self._start_response(status, headers)
        return self._start_response(status, headers, exc_info)

    def finish(self, exc: BaseException | None = None) -> None:
        """End the ``http:`` span (once): 5xx or an exception → error. Never raises:
        it runs where the app's own exception, if any, must be the one that surfaces."""
        if self.finished:
            return
        self.finished = True
        exc = exc or self.exc
        status = self.status_code
        if exc is not None and status is None:
            status = 500  # what the server answers when the exception reaches it
        span = self.span
        budget = self.budget
        # Not deactivated: it lives in the request's own context, dropped after it.
        if budget is not None and budget.dropped:
            try:
                report_budget(span, budget)
            except Exception:
                pass
        finish_http_span(span, status, exc)


class HeaderRequestTrace(RequestTrace):
    """A traced request whose response headers are recorded or get ``traceparent``."""

    __slots__ = ()

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None) -> Any:
        try:
            self.status_code = int(status[:3])
            options = self.options
            if options.response_headers:
                self.span.set_attributes(options.header_attributes("response", headers))
            if options.response_traceparent:
                header = options.response_traceparent_header(self.span)
                if header is not None:
                    headers = [*headers, header]
        except Exception:
            pass
        if exc_info is None:
            return self._start_response(status, headers)
        return self._start_response(status, headers, exc_info)


# (method, rule) -> (span name, {"http.route", "target"}): as small as the route table.
_routes: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}


def _route_entry(method: str, route: str) -> tuple[str, dict[str, Any]]:
    found = (http_span_name(method, route), {"http.route": route, "target": route})
    if len(_routes) < 10_000:
        _routes[(method, route)] = found
    return found


class TraceMiddleware:
    """Wraps ``app.wsgi_app``; ``InfraTrace.init_app`` installs it."""

    def __init__(self, wsgi_app: WSGIApplication, source: OptionsSource) -> None:
        self.wsgi_app = wsgi_app
        self.source = source
        self._options: WebOptions | None = None
        self._trace_class: type[RequestTrace] = RequestTrace
        # The environ's values for _TEMPLATE_KEY_DEFAULTS -> (span name, attributes with
        # placeholders for the per-request values): a handful of entries per app.
        self._templates: dict[tuple[str, ...], tuple[str, dict[str, Any]]] = {}

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        source = self.source
        if not source.views_wrapped:
            source.wrap_views()
        options = source.options
        if options.excluded_paths and options.excluded(environ.get("PATH_INFO", "")):
            return self.wsgi_app(environ, start_response)
        return copy_context().run(self._traced_call, options, environ, start_response)

    def _traced_call(self, options: WebOptions, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # The request's http: span (one function: every Python call here is per request).
        try:
            if options is not self._options:  # first request, or init_app again
                self._use(options)
            try:  # one C call for the keys every request from a WSGI server has
                key = _template_key(environ)
            except KeyError:
                key = _template_key_or_defaults(environ)
            found = self._templates.get(key)
            if found is None:
                found = self._template(key, options)
            name, attrs = found
            attrs = attrs.copy()
            get = environ.get
            path = key[6] + get("PATH_INFO", "")
            if not path.isascii():  # WSGI strings are latin-1 decoded bytes
                path = path.encode("latin-1").decode("utf-8", "replace")
            attrs["target"] = attrs["url.path"] = path or "/"
            value = get("REMOTE_ADDR")
            if value:
                attrs["client.address"] = value
            else:
                del attrs["client.address"]
            value = get("HTTP_USER_AGENT")
            if value:
                attrs["user_agent.original"] = value
            else:
                del attrs["user_agent.original"]
            if options.record_query:  # off by default: query strings carry tokens
                value = options.query_attribute(get("QUERY_STRING", ""))
                if value:
                    attrs["url.query"] = value
            value = get("HTTP_TRACEPARENT")
            span = start_span(
                name,
                attrs,
                kind="server",
                parent=remote_parent(value, get("HTTP_TRACESTATE")) if value else None,
            )
            # Current for the rest of this request's own context, which is dropped
            # after it: nothing to reset when the span ends (what begin() would do).
            set_current_span(span)
            value = get("HTTP_BAGGAGE")
            if value:  # the caller's baggage, for this request's context (dropped with it)
                carried = remote_baggage(value)
                if carried:
                    baggage.attach(carried)
            if options.request_headers:
                span.set_attributes(options.header_attributes("request", _request_headers(environ, options)))
            limit = options.span_budget
            trace = self._trace_class(span, SpanBudget(limit).activate() if limit > 0 else None, options, key[0], start_response)
            _request.set(trace)
        except Exception:
            return self.wsgi_app(environ, start_response)
        try:
            body = self.wsgi_app(environ, trace.start_response)
        except BaseException as exc:
            trace.finish(exc)
            raise
        if trace.streamed is False:
            # The body is already in memory: the request is complete now. (Also
            # the only way to end it under test clients that never close bodies.)
            trace.finish()
            return body
        file_wrapper = environ.get("wsgi.file_wrapper")
        if file_wrapper is not None and isinstance(file_wrapper, type) and isinstance(body, file_wrapper):
            # Keep the server's sendfile() path: wrapping would hide the file.
            trace.finish()
            return body
        return TracedBody(body, trace)

    def _use(self, options: WebOptions) -> None:
        """New options: templates made for the old ones (their ``service``) are stale;
        the ``start_response`` wrapper depends on the response options."""
        self._templates = {}
        self._trace_class = HeaderRequestTrace if options.response_headers or options.response_traceparent else RequestTrace
        self._options = options

    def _template(self, key: tuple[str, ...], options: WebOptions) -> tuple[str, dict[str, Any]]:
        """The span name and the attributes that depend on the request line and the
        server only, built by ``request_attributes`` with placeholders for the values
        that change per request (path, client address, user agent: filled in place, so
        the attributes keep ``request_attributes``' order)."""
        method, scheme, host, server_name, server_port, protocol, _ = key
        host = host or server_name
        if host.startswith("["):  # [::1]:8000
            address, _, port_text = host[1:].partition("]")
            port_text = port_text[1:]
        else:
            address, _, port_text = host.partition(":")
        if not port_text:
            port_text = server_port
        attrs = request_attributes(
            framework="flask",
            method=method,
            path="/",
            scheme=scheme,
            server_address=address or None,
            server_port=int(port_text) if port_text.isdigit() else None,
            client_address="-",
            user_agent="-",
            protocol_version=protocol[5:] if protocol.startswith("HTTP/") else None,
            service=options.service,
        )
        found = (http_span_name(method, None), attrs)
        if len(self._templates) >= _MAX_TEMPLATES:  # a client sending random methods or hosts
            self._templates.clear()
        self._templates[key] = found
        return found


# What the span's name and server attributes depend on (SCRIPT_NAME, the mount point,
# rides along: it prefixes the path), with the value a missing key stands for: all
# but HTTP_HOST are in every request from a WSGI server, and HTTP/1.1 requires Host.
_TEMPLATE_KEY_DEFAULTS = {
    "REQUEST_METHOD": "GET",
    "wsgi.url_scheme": "http",
    "HTTP_HOST": "",
    "SERVER_NAME": "",
    "SERVER_PORT": "",
    "SERVER_PROTOCOL": "",
    "SCRIPT_NAME": "",
}
_template_key: Callable[[WSGIEnvironment], tuple[str, ...]] = itemgetter(*_TEMPLATE_KEY_DEFAULTS)


def _template_key_or_defaults(environ: WSGIEnvironment) -> tuple[str, ...]:
    get = environ.get
    return tuple([get(name, default) for name, default in _TEMPLATE_KEY_DEFAULTS.items()])


_MAX_TEMPLATES = 256


def _request_headers(environ: WSGIEnvironment, options: WebOptions) -> Iterator[tuple[str, str]]:
    for name in options.request_headers:
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        value = environ.get(key)
        if value is not None:
            yield name, value


class TracedBody:
    """The response body, passed through chunk by chunk; the ``http:`` span ends when
    it is exhausted, fails, or is closed early (then ``infratrace.response_incomplete``)."""

    __slots__ = ("_body", "_iterator", "_trace")

    def __init__(self, body: Iterable[bytes], trace: RequestTrace) -> None:
        self._body = body
        self._iterator = iter(body)
        self._trace = trace

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        # In the server's (or test client's) own context, with the request's span made
        # current for the call: a body that pushes Flask's contexts itself
        # (stream_with_context) must push and pop them in the context its caller pops
        # preserved contexts in (``with client:``), not in the request's copied one.
        trace = self._trace
        token = attach(trace.span)
        budget = trace.budget
        if budget is not None:
            budget.activate()
        try:
            return next(self._iterator)
        except StopIteration:
            trace.finish()
            raise
        except BaseException as exc:
            trace.finish(exc)
            raise
        finally:
            if budget is not None:
                budget.deactivate()
            detach(token)

    def close(self) -> None:
        trace = self._trace
        token = attach(trace.span)
        try:
            close: Callable[[], None] | None = getattr(self._body, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            trace.finish(exc)
            raise
        finally:
            detach(token)
        if not trace.finished:
            try:
                trace.span.set_attribute("infratrace.response_incomplete", True)
            except Exception:
                pass
            trace.finish()
