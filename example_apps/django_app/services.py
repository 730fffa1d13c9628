"""The shop's business logic: a ``service:`` that calls a ``method:``, and a signal."""

from __future__ import annotations

import hashlib

from django.dispatch import Signal, receiver

import infratrace

order_placed = Signal()


@infratrace.method("orders.checksum")
def checksum(order_id: int, items: list[str]) -> str:
    return hashlib.sha256(f"{order_id}:{','.join(items)}".encode()).hexdigest()[:12]


@infratrace.service("orders.place")
def place_order(order_id: int, items: list[str]) -> dict[str, object]:
    order = {"id": order_id, "items": items, "checksum": checksum(order_id, items)}
    order_placed.send(sender=None, order=order)
    return order


@receiver(order_placed)
def notify_warehouse(sender: object, order: dict[str, object], **kwargs: object) -> None:
    infratrace.trace("method:warehouse.enqueue", {"order": str(order["id"])})
