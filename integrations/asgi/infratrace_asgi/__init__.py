"""infratrace ASGI middleware for Starlette, FastAPI and any ASGI app.

    from infratrace_asgi import TraceMiddleware
    app.add_middleware(TraceMiddleware, excluded_paths=["^/health$"])

``http:<METHOD> <route template>`` server spans, ``web:<endpoint>`` children,
WebSocket and lifespan spans; see docs/asgi.md."""

from __future__ import annotations

from ._middleware import TraceMiddleware
from ._routes import EndpointSpan

__all__ = ["EndpointSpan", "TraceMiddleware"]
