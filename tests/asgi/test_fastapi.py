"""TraceMiddleware in a FastAPI app: APIRoute templates, sync and async path operations,
HTTPException and validation errors (404, 422)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from infratrace_asgi import TraceMiddleware

import infratrace

fastapi = pytest.importorskip("fastapi")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@infratrace.service("orders.load")
def load_order(order_id: int) -> dict[str, Any]:
    if order_id == 0:
        raise fastapi.HTTPException(status_code=404, detail="no such order")
    return {"id": order_id}


def build() -> Any:
    app = fastapi.FastAPI()

    @app.get("/orders/{order_id}")
    async def get_order(order_id: int) -> dict[str, Any]:
        return load_order(order_id)

    @app.post("/orders/{order_id}/items")
    def add_item(order_id: int, item: dict[str, Any]) -> dict[str, Any]:  # sync: thread pool
        return {"order": load_order(order_id)["id"], "item": item}

    app.add_middleware(TraceMiddleware)
    return app


def test_fastapi_routes_spans_and_status(span_file: Any) -> None:
    out = span_file()
    with TestClient(build()) as client:
        assert client.get("/orders/7").json() == {"id": 7}
        assert client.post("/orders/7/items", json={"sku": "a"}).status_code == 200
        assert client.get("/orders/0").status_code == 404
        assert client.get("/orders/not-a-number").status_code == 422
    spans = out.spans()
    gets = [span for span in spans if span["name"] == "http:GET /orders/{order_id}"]
    assert sorted(span["status_code"] for span in gets) == [200, 404, 422]
    assert all(span["status"] == "ok" for span in gets)
    (post,) = [span for span in spans if span["name"] == "http:POST /orders/{order_id}/items"]
    (web_post,) = [span for span in spans if span["name"].endswith(".add_item")]
    assert web_post["name"].startswith("web:") and web_post["parent_span_id"] == post["span_id"]
    services = {span["parent_span_id"] for span in spans if span["name"] == "service:orders.load"}
    webs = {span["span_id"] for span in spans if span["name"].startswith("web:")}
    assert services <= webs and len(services) == 3
