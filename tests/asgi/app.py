"""The Starlette app the ASGI adapter tests drive: one route per behaviour under test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from infratrace_asgi import TraceMiddleware
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

import infratrace

# Wall-clock times at which the streaming endpoints yielded their last chunk.
LAST_CHUNK_NS: dict[str, int] = {}


@infratrace.method("user.hash")
def hash_name(name: str) -> str:
    return name[::-1]


@infratrace.service("user.profile")
def profile(user_id: int) -> dict[str, Any]:
    return {"id": user_id, "hash": hash_name(f"user{user_id}")}


@infratrace.service("user.profile_async")
async def profile_async(user_id: int) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"id": user_id, "hash": hash_name(f"user{user_id}")}


@infratrace.trigger("cache.warm")
def warm_cache() -> None:
    pass


async def user(request: Request) -> Response:
    return JSONResponse(await profile_async(request.path_params["user_id"]))


async def item(request: Request) -> Response:
    return JSONResponse({"item": request.path_params["item_id"]})


def sync_user(request: Request) -> Response:  # runs in Starlette's thread pool
    return JSONResponse(profile(int(request.path_params["user_id"])))


async def boom(request: Request) -> Response:
    raise RuntimeError("database is down")


async def unavailable(request: Request) -> Response:
    return PlainTextResponse("later", status_code=503)


async def teapot(request: Request) -> Response:
    return PlainTextResponse("short and stout", status_code=418)


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for index in range(3):
            await asyncio.sleep(0)
            if index == 2:
                LAST_CHUNK_NS["stream"] = time.time_ns()
            yield f"chunk {index}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


def sse(request: Request) -> Response:
    def events() -> Iterator[str]:  # a sync iterator: Starlette runs it in threads
        for index in range(3):
            if index == 2:
                LAST_CHUNK_NS["sse"] = time.time_ns()
            yield f"data: event {index}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def loop(request: Request) -> Response:
    for index in range(int(request.query_params.get("n", "10"))):
        with infratrace.begin(f"method:loop.step{index}"):
            pass
    return PlainTextResponse("looped")


async def health(request: Request) -> Response:
    profile(0)
    return PlainTextResponse("ok")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    while True:
        text = await websocket.receive_text()
        if text == "bye":
            await websocket.close(code=1000)
            return
        if text == "crash":
            raise ValueError("socket handler failed")
        await websocket.send_text(str(profile(len(text))["id"]))


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    warm_cache()
    yield


async def files(scope: Any, receive: Any, send: Any) -> None:
    """A plain ASGI app mounted under /files (like StaticFiles)."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


def build_app(**options: Any) -> Starlette:
    app = Starlette(
        routes=[
            Route("/users/{user_id:int}", user),
            Route("/sync/{user_id}", sync_user, methods=["GET", "POST"]),
            Route("/boom", boom),
            Route("/unavailable", unavailable),
            Route("/teapot", teapot),
            Route("/stream", stream),
            Route("/sse", sse),
            Route("/loop", loop),
            Route("/health", health),
            Mount("/api/v1", routes=[Route("/items/{item_id}", item)]),
            WebSocketRoute("/ws/{room}", echo),
            Mount("/files", app=files),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(TraceMiddleware, **options)
    return app
