"""The infratrace side of the cross-service test: a Starlette app traced by
``infratrace_asgi.TraceMiddleware`` (spans to ``$INFRATRACE_CONFIG``'s file), calling
out with an httpx ``AsyncClient`` traced by ``infratrace_http.httpx``.

    uvicorn tests.http.services.starlette_service:app --host 127.0.0.1 --port 8000

``GET /call?target=<url>`` fetches ``target`` and answers with its status and body;
``GET /hello`` answers ``hello``."""

from __future__ import annotations

import httpx
import infratrace_http.httpx
from infratrace_asgi import TraceMiddleware
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

import infratrace

infratrace.configure()
infratrace_http.httpx.instrument()


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello from starlette")


async def call(request: Request) -> Response:
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(request.query_params["target"])
    return JSONResponse({"status": answer.status_code, "body": answer.text})


app = Starlette(routes=[Route("/health", health), Route("/hello", hello), Route("/call", call)])
app.add_middleware(TraceMiddleware, excluded_paths=["^/health$"])
