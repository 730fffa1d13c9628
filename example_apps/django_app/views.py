"""Views of the example shop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

import infratrace

from . import services

logger = logging.getLogger(__name__)


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


class UserView(View):
    def get(self, request: HttpRequest, pk: int) -> JsonResponse:
        return JsonResponse({"id": pk, "name": f"user{pk}"})


def order(request: HttpRequest, order_id: int) -> JsonResponse:
    return JsonResponse(services.place_order(order_id, ["book", "pen"]))


@csrf_exempt
@require_POST
def checkout(request: HttpRequest, order_id: int) -> JsonResponse:
    """Sends the order to the Celery worker; the task's trace continues this request."""
    from example_apps.celery_app.tasks import process_order

    result = process_order.delay(order_id, "book", 1)
    return JsonResponse({"task_id": result.id}, status=202)


def report(request: HttpRequest) -> StreamingHttpResponse:
    def rows() -> Iterator[bytes]:
        for index in range(3):
            yield f"row {index}\n".encode()

    return StreamingHttpResponse(rows(), content_type="text/plain")


async def ticker(request: HttpRequest) -> StreamingHttpResponse:
    async def ticks() -> AsyncIterator[bytes]:
        for index in range(3):
            await asyncio.sleep(0.01)
            yield f"tick {index}\n".encode()

    return StreamingHttpResponse(ticks(), content_type="text/plain")


async def async_hello(request: HttpRequest) -> JsonResponse:
    await asyncio.sleep(0)
    return JsonResponse({"hello": "async"})


def fail(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("payment backend unreachable")


def stock(request: HttpRequest, sku: str) -> JsonResponse:
    """The inventory service the Starlette shop calls over HTTP: three queries (each a
    ``db:`` span, its literals never recorded), a log line carrying the trace ids, and
    the caller's baggage."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS example_stock (sku VARCHAR(64) PRIMARY KEY, units INTEGER NOT NULL)")
        cursor.execute("INSERT INTO example_stock (sku, units) VALUES (%s, 10) ON CONFLICT (sku) DO NOTHING", [sku])
        cursor.execute("SELECT units FROM example_stock WHERE sku = %s", [sku])
        units = cursor.fetchone()[0]
    tenant = infratrace.baggage.get("tenant", "")
    logger.info("stock of %s for tenant %s: %d units", sku, tenant or "-", units)
    return JsonResponse({"sku": sku, "units": units, "tenant": tenant})
