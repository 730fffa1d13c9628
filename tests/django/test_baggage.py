"""Incoming baggage and propagators through the Django middleware (Django's test
Client runs the real handler and middleware chain)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.test import Client, override_settings
from django.urls import path

import infratrace

TRACEPARENT = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"


def seen(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"baggage": infratrace.baggage.get_all(), "outgoing": infratrace.inject({})})


urlpatterns = [path("seen", seen)]


@override_settings(ROOT_URLCONF=__name__)
def test_the_callers_baggage_is_the_requests_and_goes_on(span_file: Any) -> None:
    spans = span_file()
    client = Client()
    body = client.get("/seen", headers={"traceparent": TRACEPARENT, "baggage": "tenant=acme%20co"}).json()
    assert body["baggage"] == {"tenant": "acme co"}
    assert body["outgoing"]["baggage"] == "tenant=acme%20co"
    assert body["outgoing"]["traceparent"].startswith("00-" + "a" * 32)
    assert client.get("/seen").json()["baggage"] == {}  # reset after each request
    assert infratrace.baggage.get_all() == {}
    assert {s["trace_id"] for s in spans.spans()} >= {"a" * 32}


@override_settings(ROOT_URLCONF=__name__)
def test_propagators_off(span_file: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("OTEL_PROPAGATORS", "none")
    spans = span_file()
    body = Client().get("/seen", headers={"traceparent": TRACEPARENT, "baggage": "a=1"}).json()
    assert body == {"baggage": {}, "outgoing": {}}
    assert all(s["trace_id"] != "a" * 32 for s in spans.spans())
