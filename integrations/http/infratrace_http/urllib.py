"""``urllib.request``: a ``client:`` span for each HTTP or HTTPS request an opener sends
(``urllib.request.urlopen``, ``OpenerDirector.open``, any handler built on
``AbstractHTTPHandler``), ``traceparent`` in the request's headers.

    import infratrace_http.urllib
    infratrace_http.urllib.instrument()

It wraps ``AbstractHTTPHandler.do_open``, the step that sends one request and reads the
response's headers: each request on the wire is one span, a redirect the opener
follows is a span of its own (a sibling), and the span ends at the headers (the body
is read later by the caller). A 4xx/5xx answer ends its span as an error before urllib
raises ``HTTPError``. The ``Request`` object is left as the caller made it: the
headers are put in for the call and taken out again. ``http.client`` used directly
(as infratrace's own OTLP and GreptimeDB drivers do) is not traced."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from infratrace.instrumentation import AnySpan

from ._client import ClientTracer, Instrumentation, RequestHook, ResponseHook, in_client, split_url, status_and_version

__all__ = ["instrument", "is_instrumented", "uninstrument"]


def _start(tracer: ClientTracer, request: Any) -> AnySpan | None:
    try:
        parts = split_url(request.full_url)
        if parts is None:
            return None
        return tracer.start(request.get_method(), parts[0], parts[1], request)
    except Exception:
        return None


def _put_context(tracer: ClientTracer, request: Any, span: AnySpan) -> Callable[[], None] | None:
    """Replace the request's header dicts by copies carrying ``span``'s context (any
    spelling of the same names removed); returns what puts the originals back."""
    try:
        injected: dict[str, Any] = {}
        tracer.inject(injected, span)
        if not injected:
            return None
        headers, unredirected = request.headers, request.unredirected_hdrs
        names = {key.lower() for key in injected}
        request.headers = {key: value for key, value in headers.items() if key.lower() not in names}
        added = {key: value for key, value in unredirected.items() if key.lower() not in names}
        for key, value in injected.items():
            added[key.capitalize()] = value  # how Request.add_header spells names
        request.unredirected_hdrs = added

        def restore() -> None:  # the caller's Request as it was
            request.headers, request.unredirected_hdrs = headers, unredirected

        return restore
    except Exception:
        return None


def _do_open(self: Any, http_class: Any, request: Any, **http_conn_args: Any) -> Any:
    tracer = _state.tracer
    original = _state.original("do_open")
    if tracer is None or in_client.get():
        return original(self, http_class, request, **http_conn_args)
    span = _start(tracer, request)
    restore = _put_context(tracer, request, span) if span is not None and tracer.propagate else None
    return tracer.call(span, request, status_and_version, restore, original, self, http_class, request, **http_conn_args)


def _targets() -> list[tuple[type, str, Any]]:
    from urllib.request import AbstractHTTPHandler

    return [(AbstractHTTPHandler, "do_open", _do_open)]


_state = Instrumentation("urllib", _targets)


def instrument(
    *,
    excluded_hosts: str | Iterable[str] = (),
    root_spans: bool = False,
    request_hook: RequestHook | None = None,
    response_hook: ResponseHook | None = None,
    propagate: bool = True,
) -> None:
    """Trace every HTTP(S) request ``urllib.request`` sends from now on (openers made
    before included). Calling it again replaces the options; see
    docs/http-clients.md."""
    _state.instrument(
        excluded_hosts=excluded_hosts,
        root_spans=root_spans,
        request_hook=request_hook,
        response_hook=response_hook,
        propagate=propagate,
    )


def uninstrument() -> None:
    """Stop tracing and put ``AbstractHTTPHandler.do_open`` back. Does nothing when not
    instrumented."""
    _state.uninstrument()


def is_instrumented() -> bool:
    return _state.tracer is not None
