"""Views of the test project: every shape the middleware must handle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import django
from django.dispatch import Signal, receiver
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views import View

import infratrace

order_placed = Signal()
received: list[str] = []


@receiver(order_placed)
def remember_order(sender: object, **kwargs: object) -> None:
    infratrace.trace("method:inside.receiver")
    received.append(f"sync:{kwargs.get('order')}")


async def remember_order_async(sender: object, **kwargs: object) -> None:
    await asyncio.sleep(0)
    received.append(f"async:{kwargs.get('order')}")


if django.VERSION >= (5, 0):  # async receivers (and Signal.asend) arrived in Django 5.0
    order_placed.connect(remember_order_async)


@infratrace.method("users.hash")
def hash_name(name: str) -> str:
    return name[::-1]


@infratrace.service("users.lookup")
def lookup_user(pk: int) -> dict[str, object]:
    return {"id": pk, "hash": hash_name(f"user{pk}")}


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("hello")


async def async_hello(request: HttpRequest) -> HttpResponse:
    await asyncio.sleep(0)
    return HttpResponse("hello async")


def user_detail(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse(lookup_user(pk))


async def async_user_detail(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse(lookup_user(pk))


class ItemView(View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("item")


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("kaboom")


async def async_boom(request: HttpRequest) -> HttpResponse:
    raise ValueError("async kaboom")


def server_error(request: HttpRequest) -> HttpResponse:
    return HttpResponse("unavailable", status=503)


def missing(request: HttpRequest) -> HttpResponse:
    return HttpResponse("nope", status=404)


def stream(request: HttpRequest) -> StreamingHttpResponse:
    def body() -> Iterator[bytes]:
        for index in range(3):
            with infratrace.begin(f"method:chunk{index}"):
                yield f"chunk{index}\n".encode()

    return StreamingHttpResponse(body())


def broken_stream(request: HttpRequest) -> StreamingHttpResponse:
    def body() -> Iterator[bytes]:
        yield b"first\n"
        raise OSError("disk gone")

    return StreamingHttpResponse(body())


async def async_stream(request: HttpRequest) -> StreamingHttpResponse:
    async def body() -> AsyncIterator[bytes]:
        for index in range(3):
            await asyncio.sleep(0)
            yield f"achunk{index}\n".encode()

    return StreamingHttpResponse(body())


def place_order(request: HttpRequest) -> HttpResponse:
    order_placed.send(sender=ItemView, order=7)
    return HttpResponse("placed")


async def async_place_order(request: HttpRequest) -> HttpResponse:
    await order_placed.asend(sender=ItemView, order=8)
    return HttpResponse("placed")


def many_spans(request: HttpRequest) -> HttpResponse:
    for index in range(25):
        infratrace.trace("method:step", {"index": index})
    return HttpResponse("done")


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def archive(request: HttpRequest, year: str) -> HttpResponse:
    return HttpResponse(year)
