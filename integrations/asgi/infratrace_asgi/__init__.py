"""infratrace ASGI (Starlette/FastAPI) middleware."""
