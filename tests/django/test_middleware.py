"""TraceMiddleware through Django's real request path (test Client = WSGI-style
handler, AsyncClient = ASGI handler)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from django.test import AsyncClient, Client, override_settings

from tests.conftest import SpanFile

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


def one(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [span for span in spans if span["name"] == name]
    assert len(found) == 1, f"{name}: {[span['name'] for span in spans]}"
    return found[0]


@pytest.fixture
def spans_of(span_file: Callable[..., SpanFile]) -> SpanFile:
    return span_file()


def test_sync_view_server_span_and_view_child(spans_of: SpanFile) -> None:
    response = Client().get("/hello/?x=1", HTTP_USER_AGENT="pytest-agent")
    assert response.status_code == 200
    spans = spans_of.spans()
    http = one(spans, "http:GET hello/")
    web = one(spans, "web:tests.django.project.views.hello")
    assert http["kind"] == "server" and web["kind"] == "internal"
    assert web["parent_span_id"] == http["span_id"] and web["trace_id"] == http["trace_id"]
    assert http["parent_span_id"] == ""
    attrs = http["attributes"]
    assert attrs["http.request.method"] == "GET"
    assert attrs["http.route"] == "hello/"
    assert attrs["url.path"] == "/hello/"
    assert "url.query" not in attrs  # query strings carry tokens: recorded only when switched on
    assert attrs["url.scheme"] == "http"
    assert attrs["http.response.status_code"] == 200
    assert attrs["user_agent.original"] == "pytest-agent"
    assert attrs["server.address"] == "testserver"
    assert attrs["client.address"] == "127.0.0.1"
    assert attrs["kind"] == "http" and attrs["module"] == "django" and attrs["target"] == "hello/"
    assert http["status"] == "ok" and http["status_code"] == 200


def test_async_view_under_asgi(spans_of: SpanFile) -> None:
    response = asyncio.run(AsyncClient().get("/async-hello/"))
    assert response.status_code == 200
    spans = spans_of.spans()
    http = one(spans, "http:GET async-hello/")
    web = one(spans, "web:tests.django.project.views.async_hello")
    assert web["parent_span_id"] == http["span_id"]


def test_middleware_is_natively_async_under_asgi() -> None:
    from asgiref.sync import iscoroutinefunction
    from django.core.handlers.asgi import ASGIHandler
    from infratrace_django import TraceMiddleware

    handler = ASGIHandler()
    chain = handler._middleware_chain
    instance = chain.__wrapped__
    assert isinstance(instance, TraceMiddleware)
    assert iscoroutinefunction(instance) and iscoroutinefunction(instance.process_view)


@pytest.mark.parametrize("client_class", [Client, AsyncClient])
def test_parametrised_route_and_service_method_children(spans_of: SpanFile, client_class: type) -> None:
    prefix = "async-" if client_class is AsyncClient else ""
    client = client_class()
    response = client.get(f"/api/{prefix}users/42/")
    if client_class is AsyncClient:
        response = asyncio.run(response)
    assert response.json() == {"id": 42, "hash": "24resu"}
    spans = spans_of.spans()
    http = one(spans, f"http:GET api/{prefix}users/<int:pk>/")
    view_name = "async_user_detail" if prefix else "user_detail"
    web = one(spans, f"web:tests.django.project.views.{view_name}")
    service = one(spans, "service:users.lookup")
    method = one(spans, "method:users.hash")
    assert http["attributes"]["url.path"] == f"/api/{prefix}users/42/"
    assert web["parent_span_id"] == http["span_id"]
    assert service["parent_span_id"] == web["span_id"]
    assert method["parent_span_id"] == service["span_id"]
    assert len({span["trace_id"] for span in spans}) == 1


def test_regex_route(spans_of: SpanFile) -> None:
    Client().get("/archive/2024/")
    one(spans_of.spans(), "http:GET ^archive/(?P<year>[0-9]{4})/$")


def test_class_based_view_and_405(spans_of: SpanFile) -> None:
    client = Client()
    assert client.get("/items/").status_code == 200
    assert client.post("/items/").status_code == 405
    spans = spans_of.spans()
    assert len([s for s in spans if s["name"] == "web:tests.django.project.views.ItemView"]) == 2
    post = one(spans, "http:POST items/")
    assert post["status"] == "ok" and post["attributes"]["http.response.status_code"] == 405


def test_404_unresolved_is_method_only_and_ok(spans_of: SpanFile) -> None:
    client = Client()
    assert client.get("/no/such/page/").status_code == 404
    assert client.get("/missing/").status_code == 404
    spans = spans_of.spans()
    unresolved = one(spans, "http:GET")
    assert unresolved["status"] == "ok" and unresolved["status_code"] == 404
    assert "http.route" not in unresolved["attributes"]
    assert not [s for s in spans if s["name"].startswith("web:") and s["parent_span_id"] == unresolved["span_id"]]
    resolved = one(spans, "http:GET missing/")
    assert resolved["status"] == "ok" and resolved["attributes"]["http.response.status_code"] == 404


def test_head_request(spans_of: SpanFile) -> None:
    response = Client().head("/hello/")
    assert response.status_code == 200 and response.content == b""
    http = one(spans_of.spans(), "http:HEAD hello/")
    assert http["attributes"]["http.request.method"] == "HEAD"


def test_unknown_method_is_other(spans_of: SpanFile) -> None:
    Client().generic("BREW", "/hello/")
    http = one(spans_of.spans(), "http:_OTHER hello/")
    assert http["attributes"]["http.request.method_original"] == "BREW"


def test_exception_propagates_and_marks_error(spans_of: SpanFile) -> None:
    with pytest.raises(RuntimeError, match="kaboom"):
        Client().get("/boom/")  # the test client re-raises what the handler caught
    response = Client(raise_request_exception=False).get("/boom/")
    assert response.status_code == 500
    spans = spans_of.spans()
    https = [s for s in spans if s["name"] == "http:GET boom/"]
    webs = [s for s in spans if s["name"] == "web:tests.django.project.views.boom"]
    assert len(https) == 2 and len(webs) == 2
    for span in https + webs:
        assert span["status"] == "error"
        assert span["status_message"] == "RuntimeError: kaboom"
    assert https[0]["attributes"]["error.type"] == "RuntimeError"
    assert https[0]["attributes"]["http.response.status_code"] == 500
    assert https[0]["status_code"] == 500


def test_async_exception_marks_error(spans_of: SpanFile) -> None:
    response = asyncio.run(AsyncClient(raise_request_exception=False).get("/async-boom/"))
    assert response.status_code == 500
    http = one(spans_of.spans(), "http:GET async-boom/")
    assert http["status"] == "error" and http["status_message"] == "ValueError: async kaboom"


@override_settings(DEBUG_PROPAGATE_EXCEPTIONS=True)
def test_exception_escaping_django_propagates_unchanged(spans_of: SpanFile) -> None:
    with pytest.raises(RuntimeError, match="kaboom"):
        Client(raise_request_exception=False).get("/boom/")
    http = one(spans_of.spans(), "http:GET boom/")
    assert http["status"] == "error" and http["status_message"] == "RuntimeError: kaboom"


def test_5xx_response_is_error(spans_of: SpanFile) -> None:
    assert Client().get("/unavailable/").status_code == 503
    http = one(spans_of.spans(), "http:GET unavailable/")
    assert http["status"] == "error" and http["status_code"] == 503


def test_sync_stream_span_ends_when_body_consumed(spans_of: SpanFile) -> None:
    response = Client().get("/stream/")
    assert not [s for s in spans_of.spans() if s["name"] == "http:GET stream/"], "ended before the body was read"
    assert b"".join(response.streaming_content) == b"chunk0\nchunk1\nchunk2\n"
    response.close()
    spans = spans_of.spans()
    http = one(spans, "http:GET stream/")
    assert http["status"] == "ok"
    chunks = [s for s in spans if s["name"].startswith("method:chunk")]
    assert len(chunks) == 3 and all(s["parent_span_id"] == http["span_id"] for s in chunks)
    web = one(spans, "web:tests.django.project.views.stream")
    assert http["end_time_unix_nano"] >= max(s["end_time_unix_nano"] for s in chunks) >= web["end_time_unix_nano"]


def test_stream_closed_early_ends_span(spans_of: SpanFile) -> None:
    response = Client().get("/stream/")
    response.close()  # the client went away before reading
    http = one(spans_of.spans(), "http:GET stream/")
    assert http["attributes"]["infratrace.body_incomplete"] is True


def test_stream_failing_midway_is_error(spans_of: SpanFile) -> None:
    response = Client().get("/broken-stream/")
    with pytest.raises(OSError, match="disk gone"):
        b"".join(response.streaming_content)
    http = one(spans_of.spans(), "http:GET broken-stream/")
    assert http["status"] == "error" and "disk gone" in http["status_message"]


def test_async_stream_span_ends_when_body_consumed(spans_of: SpanFile) -> None:
    async def fetch() -> bytes:
        response = await AsyncClient().get("/async-stream/")
        assert not [s for s in spans_of.spans() if s["name"] == "http:GET async-stream/"]
        return b"".join([chunk async for chunk in response.streaming_content])

    body = asyncio.run(fetch())
    assert body == b"achunk0\nachunk1\nachunk2\n"
    http = one(spans_of.spans(), "http:GET async-stream/")
    assert http["status"] == "ok" and "infratrace.body_incomplete" not in http["attributes"]


def test_incoming_traceparent_is_continued(spans_of: SpanFile) -> None:
    Client().get("/hello/", HTTP_TRACEPARENT=f"00-{TRACE_ID}-{PARENT_ID}-01", HTTP_TRACESTATE="vendor=abc")
    http = one(spans_of.spans(), "http:GET hello/")
    assert http["trace_id"] == TRACE_ID and http["parent_span_id"] == PARENT_ID


@pytest.mark.parametrize("header", ["garbage", f"00-{'0' * 32}-{PARENT_ID}-01", f"zz-{TRACE_ID}-{PARENT_ID}-01"])
def test_malformed_traceparent_starts_new_trace(spans_of: SpanFile, header: str) -> None:
    assert Client().get("/hello/", HTTP_TRACEPARENT=header).status_code == 200
    http = one(spans_of.spans(), "http:GET hello/")
    assert http["trace_id"] != TRACE_ID and http["parent_span_id"] == ""


@override_settings(INFRATRACE_DJANGO={"record_query": True, "sensitive_query_keys": ["session"]})
def test_query_strings_when_switched_on_have_sensitive_values_redacted(spans_of: SpanFile) -> None:
    Client().get("/hello/?x=1&access_token=abc&API_KEY=k&password=p&my_session=s&sig=z&q=ok")
    (http,) = [s for s in spans_of.spans() if s["name"].startswith("http:")]
    assert http["attributes"]["url.query"] == (
        "x=1&access_token=[REDACTED]&API_KEY=[REDACTED]&password=[REDACTED]&my_session=[REDACTED]&sig=[REDACTED]&q=ok"
    )


@override_settings(INFRATRACE_DJANGO={"record_query": True})
def test_shared_attributes_are_copied_per_request(spans_of: SpanFile) -> None:
    """Attributes computed once per (method, scheme, host, port, protocol) and per
    (view, route, method) are copied: one request's values never reach the next."""
    client = Client()
    client.get("/hello/?x=1", HTTP_USER_AGENT="agent-1", HTTP_HOST="a.example:8080")
    client.get("/hello/")
    client.get("/api/users/7/", HTTP_HOST="a.example:8080")
    client.get("/api/users/8/", HTTP_USER_AGENT="agent-2")
    http = [s for s in spans_of.spans() if s["name"].startswith("http:")]
    assert [s["name"] for s in http] == ["http:GET hello/", "http:GET hello/", *["http:GET api/users/<int:pk>/"] * 2]
    first, second, third, fourth = (s["attributes"] for s in http)
    assert first["url.query"] == "x=1" and first["user_agent.original"] == "agent-1"
    assert first["server.address"] == "a.example" and first["server.port"] == 80  # SERVER_PORT
    assert "url.query" not in second and "user_agent.original" not in second
    assert second["server.address"] == "testserver" and second["url.path"] == "/hello/"
    assert third["url.path"] == "/api/users/7/" and third["server.address"] == "a.example"
    assert third["target"] == third["http.route"] == "api/users/<int:pk>/"
    assert fourth["url.path"] == "/api/users/8/" and fourth["user_agent.original"] == "agent-2"
    assert "url.query" not in third and "user_agent.original" not in third


def test_scheme_follows_secure_proxy_ssl_header(spans_of: SpanFile) -> None:
    """``url.scheme`` is ``request.scheme``: the proxy header counts only while
    SECURE_PROXY_SSL_HEADER is set, whenever it was changed."""
    client = Client()
    client.get("/hello/", HTTP_X_FORWARDED_PROTO="https")
    with override_settings(SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https")):
        client.get("/hello/", HTTP_X_FORWARDED_PROTO="https")
        client.get("/hello/")
        asyncio.run(AsyncClient().get("/async-hello/", headers={"x-forwarded-proto": "https"}))
    client.get("/hello/", HTTP_X_FORWARDED_PROTO="https")
    http = [s["attributes"] for s in spans_of.spans() if s["name"].startswith("http:")]
    assert [attrs["url.scheme"] for attrs in http] == ["http", "https", "http", "https", "http"]


def test_no_span_leaks_into_the_next_request(spans_of: SpanFile) -> None:
    import infratrace

    client = Client()
    client.get("/hello/")
    client.get("/stream/").close()
    assert infratrace.current_span() is None
    client.get("/hello/")
    assert {s["parent_span_id"] for s in spans_of.spans() if s["name"].startswith("http:")} == {""}


def test_no_span_leaks_between_requests_of_one_task(spans_of: SpanFile) -> None:
    """Requests sent one after another from one asyncio task share its context: each
    must put back what was current before it."""
    import infratrace

    async def two_requests() -> None:
        client = AsyncClient()
        await client.get("/async-hello/")
        assert infratrace.current_span() is None
        streamed = await client.get("/async-stream/")
        assert b"".join([chunk async for chunk in streamed.streaming_content]).startswith(b"achunk0")
        assert infratrace.current_span() is None
        await client.get("/hello/")
        assert infratrace.current_span() is None

    asyncio.run(two_requests())
    http = [s for s in spans_of.spans() if s["name"].startswith("http:")]
    assert len(http) == 3 and {s["parent_span_id"] for s in http} == {""}
    assert len({s["trace_id"] for s in http}) == 3


@override_settings(INFRATRACE_DJANGO={"excluded_paths": ["^/health/$"]})
def test_excluded_paths(spans_of: SpanFile) -> None:
    client = Client()
    assert client.get("/health/").status_code == 200
    client.get("/hello/")
    names = [s["name"] for s in spans_of.spans()]
    assert "http:GET health/" not in names and not any("health" in name for name in names)
    assert "http:GET hello/" in names


@override_settings(
    INFRATRACE_DJANGO={
        "request_headers": ["X-Request-Id", "Authorization"],
        "response_headers": ["content-type"],
        "response_traceparent": True,
    }
)
def test_header_capture_redaction_and_response_traceparent(spans_of: SpanFile) -> None:
    response = Client().get("/hello/", HTTP_X_REQUEST_ID="req-1", HTTP_AUTHORIZATION="Bearer secret")
    http = one(spans_of.spans(), "http:GET hello/")
    attrs = http["attributes"]
    assert attrs["http.request.header.x-request-id"] == ["req-1"]
    assert attrs["http.request.header.authorization"] == ["[REDACTED]"]
    assert attrs["http.response.header.content-type"] == ["text/html; charset=utf-8"]
    assert response["traceparent"] == f"00-{http['trace_id']}-{http['span_id']}-01"


def request_hook(span: Any, request: Any) -> None:
    span.set_attribute("app.tenant", request.META.get("HTTP_X_TENANT", ""))


def response_hook(span: Any, request: Any, response: Any) -> None:
    span.set_attribute("app.length", len(response.content))


def failing_hook(span: Any, request: Any) -> None:
    raise KeyError("hook bug")


@override_settings(INFRATRACE_DJANGO={"request_hook": f"{__name__}:request_hook", "response_hook": response_hook})
def test_hooks(spans_of: SpanFile) -> None:
    Client().get("/hello/", HTTP_X_TENANT="acme")
    attrs = one(spans_of.spans(), "http:GET hello/")["attributes"]
    assert attrs["app.tenant"] == "acme" and attrs["app.length"] == 5


@override_settings(INFRATRACE_DJANGO={"request_hook": failing_hook})
def test_failing_hook_never_reaches_the_app(spans_of: SpanFile) -> None:
    assert Client().get("/hello/").content == b"hello"
    attrs = one(spans_of.spans(), "http:GET hello/")["attributes"]
    assert "KeyError" in attrs["infratrace.hook_error"]


@override_settings(INFRATRACE_DJANGO={"span_budget": 10})
def test_span_budget(spans_of: SpanFile) -> None:
    assert Client().get("/many/").content == b"done"
    spans = spans_of.spans()
    http = one(spans, "http:GET many/")
    steps = [s for s in spans if s["name"] == "method:step"]
    # the web: span takes one of the 10
    assert len(steps) == 9
    assert http["attributes"]["infratrace.spans_dropped"] == 16


def test_tracing_failure_never_reaches_the_app(span_file: Callable[..., SpanFile]) -> None:
    import infratrace

    class BrokenSpan:
        """A span from a faulty custom tracer: every attribute and method raises."""

        def __getattr__(self, name: str) -> Any:
            raise RuntimeError(f"broken span: {name}")

    class BrokenTracer(infratrace.Tracer):
        def start_span(self, *args: Any, **kwargs: Any) -> Any:
            return BrokenSpan()

    infratrace.set_hook(BrokenTracer())
    try:
        assert Client().get("/hello/").content == b"hello"
        assert Client().get("/order/").content == b"placed"
        streamed = Client().get("/broken-stream/")
        assert next(iter(streamed.streaming_content)) == b"first\n"
        streamed.close()
        assert Client().post("/items/").status_code == 405
        assert Client(raise_request_exception=False).get("/boom/").status_code == 500
        assert infratrace.current_span() is None
    finally:
        infratrace.set_hook(None)


@pytest.mark.parametrize("client_class", [Client, AsyncClient])
@override_settings(INFRATRACE_DJANGO={"service": "shop", "middleware_timings": True})
def test_middleware_timings(spans_of: SpanFile, client_class: type) -> None:
    response = client_class().get("/hello/")
    if client_class is AsyncClient:
        response = asyncio.run(response)
    assert response.status_code == 200
    spans = spans_of.spans()
    http = one(spans, "http:GET hello/")
    timing = one(spans, "web:middleware")
    web = one(spans, "web:tests.django.project.views.hello")
    assert timing["parent_span_id"] == http["span_id"]
    attrs = timing["attributes"]
    assert attrs["django.middleware.count"] == 1
    assert attrs["django.middleware.django.middleware.common.CommonMiddleware.ms"] >= 0
    assert http["attributes"]["service"] == "shop"
    assert web["attributes"]["service"] == "shop"
    # The span covers the chain below TraceMiddleware as it ran: from its first entry
    # (before the view began) to its last exit (before the web: span ended, when the
    # response got back), inside the http: span.
    assert http["start_time_unix_nano"] <= timing["start_time_unix_nano"] <= web["start_time_unix_nano"]
    assert timing["end_time_unix_nano"] <= web["end_time_unix_nano"] <= http["end_time_unix_nano"]
    assert timing["end_time_unix_nano"] - timing["start_time_unix_nano"] >= attrs["django.middleware.total_ms"] * 1e6 - 1e3


def test_off_by_default_no_middleware_span(spans_of: SpanFile) -> None:
    Client().get("/hello/")
    assert not [s for s in spans_of.spans() if s["name"] == "web:middleware"]
