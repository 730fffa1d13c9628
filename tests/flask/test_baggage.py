"""Incoming baggage, propagators and log correlation through the Flask extension."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask

import infratrace
import infratrace.logging as it_logging

TRACEPARENT = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"


def _routes(app: Flask) -> Flask:
    @app.get("/seen")
    def seen() -> dict[str, Any]:
        record = logging.getLogRecordFactory()("x", logging.INFO, __file__, 1, "m", (), None)
        return {
            "baggage": infratrace.baggage.get_all(),
            "outgoing": infratrace.inject({}),
            "log_trace_id": getattr(record, "trace_id", None),
        }

    return app


def test_the_callers_baggage_is_the_requests_and_goes_on(make_app: Callable[..., Flask], spans: Any) -> None:
    client = _routes(make_app()).test_client()
    body = client.get("/seen", headers={"traceparent": TRACEPARENT, "baggage": "tenant=acme%20co"}).get_json()
    assert body["baggage"] == {"tenant": "acme co"}
    assert body["outgoing"]["baggage"] == "tenant=acme%20co"
    assert client.get("/seen").get_json()["baggage"] == {}
    assert infratrace.baggage.get_all() == {}


def test_log_correlation_option(make_app: Callable[..., Flask], spans: Any) -> None:
    try:
        client = _routes(make_app(log_correlation=True)).test_client()
        body = client.get("/seen", headers={"traceparent": TRACEPARENT}).get_json()
        assert body["log_trace_id"] == "a" * 32
    finally:
        it_logging.uninstrument()


def test_propagators_off(make_app: Callable[..., Flask], span_file: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("OTEL_PROPAGATORS", "baggage")
    file = span_file()
    client = _routes(make_app()).test_client()
    body = client.get("/seen", headers={"traceparent": TRACEPARENT, "baggage": "a=1"}).get_json()
    assert body["baggage"] == {"a": "1"} and body["outgoing"] == {"baggage": "a=1"}
    (server,) = [s for s in file.spans() if s["kind"] == "server"]
    assert server["trace_id"] != "a" * 32
