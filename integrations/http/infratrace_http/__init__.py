"""infratrace for outgoing HTTP: a ``client:<METHOD> <host>`` span for every request a
client library sends, a child of the current span, and its ``traceparent`` (the
trace's sampling decision included) in the request's headers, so the service called
continues the same trace.

    import infratrace_http.httpx, infratrace_http.requests
    infratrace_http.httpx.instrument()      # httpx.Client and httpx.AsyncClient
    infratrace_http.requests.instrument()   # also: infratrace_http.urllib3, infratrace_http.urllib

Importing patches nothing; each library module's ``instrument()`` does, and its
``uninstrument()`` undoes it. :class:`route` names the URL template of the requests
sent inside a ``with`` block; :class:`untraced` keeps the requests sent inside one out
of the trace. See docs/http-clients.md."""

from __future__ import annotations

from ._client import route, untraced

__all__ = ["route", "untraced"]
