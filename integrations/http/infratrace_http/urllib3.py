"""``urllib3``: a ``client:`` span for each ``HTTPConnectionPool.urlopen`` (every
``urllib3.request``, ``PoolManager.request``, ``pool.urlopen``; HTTPS pools inherit it),
``traceparent`` in the request's headers.

    import infratrace_http.urllib3
    infratrace_http.urllib3.instrument()

The headers are copied before ``traceparent`` is added: a pool's or a ``PoolManager``'s
default headers (which urllib3 passes on by reference) are never changed. Retries made
inside the call belong to its span; a redirect followed by a ``PoolManager`` is a span
of its own. With ``preload_content=False`` the span ends at the headers, otherwise
after the body urllib3 reads. Under ``requests`` (also instrumented) no second span is
made. The request hook gets a :class:`RequestInfo`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from infratrace.instrumentation import AnySpan

from ._client import (
    ClientTracer,
    Instrumentation,
    RequestHook,
    ResponseHook,
    in_client,
    origin_of,
    split_url,
    status_and_version,
    with_context,
)

__all__ = ["RequestInfo", "instrument", "is_instrumented", "uninstrument"]


@dataclass
class RequestInfo:
    """What the request hook and the response hook get as ``request``: the pool, and
    the method, URL (as given to ``urlopen``: a path, or an absolute URL through a
    proxy), headers (with ``traceparent``) and body of the request."""

    pool: Any
    method: str
    url: str
    headers: Mapping[str, str] | None
    body: Any


def _start(
    tracer: ClientTracer, pool: Any, method: Any, url: Any, body: Any, headers: Any
) -> tuple[AnySpan | None, Any, RequestInfo | None]:
    """The span (``None``: not traced), the headers to send and, when a hook wants it,
    the request as the hooks see it."""
    info = span = None
    try:
        if not isinstance(method, str) or not isinstance(url, str):
            return None, headers, None
        if url.startswith("/"):
            origin = origin_of(pool.scheme, pool.host, pool.port)
            rest = url
        else:
            parts = split_url(url)  # absolute through a proxy: the target's origin
            if parts is None:
                origin, rest = origin_of(pool.scheme, pool.host, pool.port), ""
            else:
                origin, rest = parts
        info = RequestInfo(pool, method, url, headers, body) if tracer.request_hook or tracer.response_hook else None
        span = tracer.start(method, origin, rest, info)
        if span is None or not tracer.propagate:
            return span, headers, info
        sent = with_context(headers if headers is not None else pool.headers, span)
        if info is not None:
            info.headers = sent
        return span, sent, info
    except Exception:  # the span, if begun, still ends with the response
        return span, headers, info


def _urlopen(self: Any, method: Any, url: Any, body: Any = None, headers: Any = None, *args: Any, **kwargs: Any) -> Any:
    tracer = _state.tracer
    original = _state.original("urlopen")
    if tracer is None or in_client.get():
        return original(self, method, url, body, headers, *args, **kwargs)
    span, sent, info = _start(tracer, self, method, url, body, headers)
    return tracer.call(span, info, status_and_version, None, original, self, method, url, body, sent, *args, **kwargs)


def _targets() -> list[tuple[type, str, Any]]:
    from urllib3.connectionpool import HTTPConnectionPool

    return [(HTTPConnectionPool, "urlopen", _urlopen)]


_state = Instrumentation("urllib3", _targets)


def instrument(
    *,
    excluded_hosts: str | Iterable[str] = (),
    root_spans: bool = False,
    request_hook: RequestHook | None = None,
    response_hook: ResponseHook | None = None,
    propagate: bool = True,
) -> None:
    """Trace every request urllib3 sends from now on (pools made before included).
    Calling it again replaces the options; see docs/http-clients.md."""
    _state.instrument(
        excluded_hosts=excluded_hosts,
        root_spans=root_spans,
        request_hook=request_hook,
        response_hook=response_hook,
        propagate=propagate,
    )


def uninstrument() -> None:
    """Stop tracing and put ``HTTPConnectionPool.urlopen`` back. Does nothing when not
    instrumented."""
    _state.uninstrument()


def is_instrumented() -> bool:
    return _state.tracer is not None
