"""A small Starlette app traced by infratrace, runnable on a real server:

    uvicorn example_apps.starlette_app.app:app --host 127.0.0.1 --port 8000

Tracing is configured from ``$INFRATRACE_CONFIG`` (the demo points it at
example_apps/infratrace.toml); ``TraceMiddleware`` makes the ``http:``/``web:`` spans,
the lifespan ``event:`` spans, and the decorated functions their children. Outgoing
httpx requests are ``client:`` spans whose ``traceparent`` and ``baggage`` go to the
service called: ``/stock/{sku}`` asks the Django example app's inventory
(``$INVENTORY_URL``), whose queries join the same trace."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import infratrace_http.httpx
from infratrace_asgi import TraceMiddleware
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

import infratrace

infratrace.configure()  # $INFRATRACE_CONFIG, else one console connection
infratrace_http.httpx.instrument()  # client: spans and propagation for every httpx client

USERS = {1: "alice", 2: "bob", 3: "carol"}


@infratrace.method("user.hash")
def password_hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:12]


@infratrace.service("user.profile")
async def user_profile(user_id: int) -> dict[str, object]:
    name = USERS.get(user_id)
    if name is None:
        return {}
    infratrace.trace("event:user.profile.read", {"user": name})
    return {"id": user_id, "name": name, "hash": password_hash(name)}


@infratrace.trigger("cache.warm")
async def warm_cache() -> None:
    await asyncio.sleep(0)


async def home(request: Request) -> Response:
    return PlainTextResponse("infratrace starlette example\n")


async def health(request: Request) -> Response:  # excluded from tracing below
    return PlainTextResponse("ok")


async def user(request: Request) -> Response:
    profile = await user_profile(request.path_params["user_id"])
    if not profile:
        return JSONResponse({"error": "no such user"}, status_code=404)
    return JSONResponse(profile)


def checkout(request: Request) -> Response:
    """Sends the order to the Celery worker (a sync endpoint: Starlette runs it in a
    thread with the request's context, so the task's trace continues this request)."""
    from example_apps.celery_app.tasks import process_order

    result = process_order.delay(request.path_params["order_id"], "book", 1)
    return JSONResponse({"task_id": result.id}, status_code=202)


async def report(request: Request) -> Response:
    """Streams a few lines; each says when it was produced (Unix ns), so a client can
    check that the request's span ended after the last one."""

    async def lines() -> AsyncIterator[bytes]:
        for index in range(3):
            await asyncio.sleep(0.02)  # the report is produced slowly
            yield f"line {index} {time.time_ns()}\n".encode()

    return StreamingResponse(lines(), media_type="text/plain")


async def events(request: Request) -> Response:
    """Server-sent events: a tick every 50 ms until the client goes away."""

    async def ticks() -> AsyncIterator[str]:
        for index in range(1200):  # at most a minute
            yield f"event: tick\ndata: {index}\n\n"
            await asyncio.sleep(0.05)

    return StreamingResponse(ticks(), media_type="text/event-stream")


async def stock(request: Request) -> Response:
    """Asks the inventory service (another process, traced by infratrace's Django
    adapter) for a product's stock; the tenant travels as baggage."""
    inventory = os.environ.get("INVENTORY_URL")
    if not inventory:
        return JSONResponse({"error": "INVENTORY_URL is not set"}, status_code=503)
    with infratrace.baggage.scope({"tenant": request.headers.get("x-tenant", "demo")}):
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.get(f"{inventory}/stock/{request.path_params['sku']}/")
    return JSONResponse(answer.json(), status_code=answer.status_code)


async def fail(request: Request) -> Response:
    raise RuntimeError("payment backend unavailable")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(text.upper())


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await warm_cache()
    yield


app = Starlette(
    routes=[
        Route("/", home),
        Route("/health", health),
        Route("/users/{user_id:int}", user),
        Route("/checkout/{order_id:int}", checkout, methods=["POST"]),
        Route("/report", report),
        Route("/events", events),
        Route("/fail", fail),
        Route("/stock/{sku}", stock),
        WebSocketRoute("/ws/echo", echo),
    ],
    lifespan=lifespan,
)
app.add_middleware(TraceMiddleware, excluded_paths=["^/health$"], response_traceparent=True)
