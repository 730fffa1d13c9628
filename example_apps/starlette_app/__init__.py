"""A small Starlette shop traced by ``infratrace_asgi.TraceMiddleware``."""
