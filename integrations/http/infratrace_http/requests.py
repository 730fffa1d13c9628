"""``requests``: a ``client:`` span for each ``Session.send`` (every ``requests.get``,
``session.post``, … goes through it), ``traceparent`` in the request's headers.

    import infratrace_http.requests
    infratrace_http.requests.instrument()

One span covers the whole call: redirects followed inside it carry the same
``traceparent`` and the span records the final response. Without ``stream=True``
requests reads the body inside the call, so the span ends after the body; with it, at
the headers. urllib3 under requests makes no second span, instrumented or not."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._client import Instrumentation, RequestHook, ResponseHook, in_client, protocol_version, split_url

__all__ = ["instrument", "is_instrumented", "uninstrument"]


def _send(self: Any, request: Any, **kwargs: Any) -> Any:
    tracer = _state.tracer
    original = _state.original("send")
    if tracer is None or in_client.get():
        return original(self, request, **kwargs)
    span = None
    try:
        method = request.method
        url = request.url
        if isinstance(method, str) and isinstance(url, str):
            parts = split_url(url)
            if parts is not None:
                span = tracer.start(method, parts[0], parts[1], request)
                if span is not None and tracer.propagate and request.headers is not None:
                    tracer.inject(request.headers, span)
    except Exception:
        pass
    return tracer.call(span, request, _facts, None, original, self, request, **kwargs)


def _facts(response: Any) -> tuple[Any, Any]:
    return response.status_code, protocol_version(getattr(response.raw, "version", None))


def _targets() -> list[tuple[type, str, Any]]:
    from requests import Session

    return [(Session, "send", _send)]


_state = Instrumentation("requests", _targets)


def instrument(
    *,
    excluded_hosts: str | Iterable[str] = (),
    root_spans: bool = False,
    request_hook: RequestHook | None = None,
    response_hook: ResponseHook | None = None,
    propagate: bool = True,
) -> None:
    """Trace every request sent with ``requests`` from now on (sessions made before
    included). Calling it again replaces the options; see docs/http-clients.md."""
    _state.instrument(
        excluded_hosts=excluded_hosts,
        root_spans=root_spans,
        request_hook=request_hook,
        response_hook=response_hook,
        propagate=propagate,
    )


def uninstrument() -> None:
    """Stop tracing and put ``Session.send`` back. Does nothing when not instrumented."""
    _state.uninstrument()


def is_instrumented() -> bool:
    return _state.tracer is not None
