"""One trace across two services and a database, with the example apps on real servers:
the Starlette shop (uvicorn, traced by the ASGI middleware, httpx instrumented) asks
the Django app's inventory (gunicorn with two workers, traced by the Django adapter) for
stock; the inventory runs three queries on PostgreSQL (SQLite when PostgreSQL is not
reachable) and logs a line. Both processes write one trace file.

The same across an OpenTelemetry-instrumented peer is tests/http/test_cross_service.py."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import BIN, TracedServer, postgres_up

pytestmark = pytest.mark.slow


DATABASES = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.skipif(not postgres_up(), reason="PostgreSQL is not reachable")),
]


@pytest.fixture(params=DATABASES)
def services(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TracedServer, TracedServer, Path, str]]:
    system = request.param
    log_file = tmp_path / "inventory.log"
    env = {"EXAMPLE_LOG_FILE": str(log_file)}
    if system == "postgresql":
        env["EXAMPLE_POSTGRES_DB"] = "test"
    else:
        env["EXAMPLE_SQLITE_PATH"] = str(tmp_path / "shop.sqlite3")
    inventory = TracedServer(
        [str(BIN / "gunicorn"), "--bind", "127.0.0.1:{port}", "--workers", "2", "--log-level", "warning",
         "example_apps.django_app.wsgi:application"],
        tmp_path, health_path="/health/", env=env,
    )  # fmt: skip
    try:
        shop = TracedServer(
            [str(BIN / "uvicorn"), "example_apps.starlette_app.app:app", "--host", "127.0.0.1", "--port", "{port}",
             "--log-level", "warning"],
            tmp_path, env={"INVENTORY_URL": inventory.base},
        )  # fmt: skip
    except BaseException:
        inventory.stop()
        raise
    try:
        yield shop, inventory, log_file, system
    finally:
        shop.stop()
        inventory.stop()


def test_one_trace_from_the_shop_through_the_inventory_into_its_queries(services: Any) -> None:
    shop, inventory, log_file, system = services
    sku = f"sku-{uuid.uuid4().hex[:10]}"
    status, _, body = shop.request("GET", f"/stock/{sku}", {"x-tenant": "acme"})
    assert status == 200, body
    assert json.loads(b"".join(body)) == {"sku": sku, "units": 10, "tenant": "acme"}  # the baggage arrived
    shop.stop()
    inventory.stop()
    spans = inventory.read()
    root = next(s for s in spans if s["name"] == "http:GET /stock/{sku}")
    trace = [s for s in spans if s["trace_id"] == root["trace_id"]]
    by_id = {s["span_id"]: s for s in trace}

    def parent(span: dict[str, Any]) -> dict[str, Any]:
        return by_id[span["parent_span_id"]]

    (client,) = [s for s in trace if s["name"].startswith("client:")]
    assert client["name"] == f"client:GET 127.0.0.1:{inventory.port}"
    assert client["kind"] == "client"
    assert client["attributes"]["url.full"] == f"{inventory.base}/stock/{sku}/"
    assert client["attributes"]["http.response.status_code"] == 200
    assert parent(client)["name"] == "web:example_apps.starlette_app.app.stock"
    assert parent(parent(client)) is root

    (served,) = [s for s in trace if s["name"] == "http:GET stock/<str:sku>/"]
    assert parent(served) is client  # the inventory continues the shop's trace
    assert served["resource"]["process.pid"] != root["resource"]["process.pid"]
    (view,) = [s for s in trace if s["name"] == "web:example_apps.django_app.views.stock"]
    assert parent(view) is served

    queries = sorted((s for s in trace if s["name"].startswith("db:")), key=lambda s: s["start_time_unix_nano"])
    assert [q["name"] for q in queries] == ["db:CREATE TABLE example_stock", "db:INSERT example_stock", "db:SELECT example_stock"]
    for query in queries:
        assert parent(query) is view
        assert query["kind"] == "client"
        attributes = query["attributes"]
        assert attributes["db.system"] == system
        assert sku not in json.dumps(query)  # a parameter value is never recorded
    select = queries[2]["attributes"]
    assert select["db.operation.name"] == "SELECT"
    assert select["db.collection.name"] == "example_stock"
    assert select["db.query.text"] == "SELECT units FROM example_stock WHERE sku = %s"  # placeholders stay
    insert = queries[1]["attributes"]["db.query.text"]  # its 10 is a literal of the text: replaced too
    assert insert == "INSERT INTO example_stock (sku, units) VALUES (%s, ?) ON CONFLICT (sku) DO NOTHING"
    if system == "postgresql":
        assert queries[0]["attributes"]["db.namespace"] == "test"

    # The inventory's log line carries the ids of the span it was logged in.
    lines = [line for line in log_file.read_text().splitlines() if sku in line]
    assert len(lines) == 1, lines
    assert f"trace={root['trace_id']} span={view['span_id']}" in lines[0]
    assert "tenant acme" in lines[0]
