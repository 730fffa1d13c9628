"""``httpx``: a ``client:`` span for each request an ``httpx.Client`` or
``httpx.AsyncClient`` sends through httpx's network transport, ``traceparent`` in the
request's headers.

    import infratrace_http.httpx
    infratrace_http.httpx.instrument()

It wraps ``HTTPTransport.handle_request`` and ``AsyncHTTPTransport.handle_async_request``,
so every client counts, made before ``instrument()`` or after, with no event hooks or
transport to pass. Clients on other transports (``MockTransport``, ``ASGITransport``,
``WSGITransport``, a custom one) send nothing over the network and are not traced.

Each request on the wire is one span: a redirect that httpx follows is a span of its
own (a sibling). The span ends when the transport returns the response, at its headers,
also when the body is streamed afterwards (``client.stream(...)``), as OpenTelemetry's
httpx instrumentation does. A per-request URL template may be given as the request
extension ``"infratrace.route"``::

    client.get(url, extensions={"infratrace.route": "/users/{id}"})
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from infratrace.instrumentation import AnySpan

from ._client import ClientTracer, Instrumentation, RequestHook, ResponseHook, in_client, origin_of, protocol_version

__all__ = ["ROUTE_EXTENSION", "instrument", "is_instrumented", "uninstrument"]

ROUTE_EXTENSION = "infratrace.route"


def _start(tracer: ClientTracer, request: Any) -> AnySpan | None:
    span = None
    try:
        url = request.url
        origin = origin_of(url.scheme, url.host, url.port)
        template = request.extensions.get(ROUTE_EXTENSION)
        span = tracer.start(request.method, origin, url.raw_path.decode("ascii"), request, template)
        if span is not None and tracer.propagate:
            tracer.inject(request.headers, span)
        return span
    except Exception:  # the span, if begun, still ends with the response
        return span


def _facts(response: Any) -> tuple[Any, Any]:
    return response.status_code, protocol_version(response.extensions.get("http_version"))


def _handle_request(self: Any, request: Any) -> Any:
    tracer = _state.tracer
    original = _state.original("handle_request")
    if tracer is None or in_client.get():
        return original(self, request)
    return tracer.call(_start(tracer, request), request, _facts, None, original, self, request)


async def _handle_async_request(self: Any, request: Any) -> Any:
    tracer = _state.tracer
    original = _state.original("handle_async_request")
    if tracer is None or in_client.get():
        return await original(self, request)
    span = _start(tracer, request)
    token = in_client.set(True)  # ClientTracer.call, awaited
    try:
        response = await original(self, request)
    except BaseException as exc:
        in_client.reset(token)
        if span is not None:
            tracer.fail(span, exc)
        raise
    in_client.reset(token)
    if span is not None:
        tracer.returned(span, request, response, _facts)
    return response


def _targets() -> list[tuple[type, str, Any]]:
    import httpx

    return [
        (httpx.HTTPTransport, "handle_request", _handle_request),
        (httpx.AsyncHTTPTransport, "handle_async_request", _handle_async_request),
    ]


_state = Instrumentation("httpx", _targets)


def instrument(
    *,
    excluded_hosts: str | Iterable[str] = (),
    root_spans: bool = False,
    request_hook: RequestHook | None = None,
    response_hook: ResponseHook | None = None,
    propagate: bool = True,
) -> None:
    """Trace every request httpx sends over the network from now on, sync and async
    (clients made before included). Calling it again replaces the options; see
    docs/http-clients.md."""
    _state.instrument(
        excluded_hosts=excluded_hosts,
        root_spans=root_spans,
        request_hook=request_hook,
        response_hook=response_hook,
        propagate=propagate,
    )


def uninstrument() -> None:
    """Stop tracing and put the transports' methods back. Does nothing when not
    instrumented."""
    _state.uninstrument()


def is_instrumented() -> bool:
    return _state.tracer is not None
