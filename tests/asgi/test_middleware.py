"""TraceMiddleware through Starlette's real request path (TestClient / httpx)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from infratrace_asgi import TraceMiddleware

import infratrace
from infratrace import ConfigError

from .app import LAST_CHUNK_NS

REMOTE_TRACE = "0af7651916cd43dd8448eb211c80319c"
REMOTE_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{REMOTE_TRACE}-{REMOTE_SPAN}-01"
Spans = list[dict[str, Any]]


def named(spans: Spans, name: str) -> dict[str, Any]:
    found = [span for span in spans if span["name"] == name]
    assert len(found) == 1, f"{name}: {len(found)} spans in {[s['name'] for s in spans]}"
    return found[0]


def http_spans(spans: Spans) -> Spans:
    return [span for span in spans if span["name"].startswith("http:")]


def test_parametrised_route_names_the_span_and_web_child(span_file: Any, client_for: Any) -> None:
    out = span_file()
    response = client_for().get("/users/42", headers={"traceparent": TRACEPARENT, "user-agent": "pytest-agent"})
    assert response.json()["id"] == 42
    spans = out.spans()
    http = named(spans, "http:GET /users/{user_id:int}")
    web = named(spans, "web:tests.asgi.app.user")
    service = named(spans, "service:user.profile_async")
    method = named(spans, "method:user.hash")
    assert http["kind"] == "server" and web["kind"] == "internal"
    assert (http["trace_id"], http["parent_span_id"]) == (REMOTE_TRACE, REMOTE_SPAN)
    assert {web["trace_id"], service["trace_id"], method["trace_id"]} == {REMOTE_TRACE}
    assert web["parent_span_id"] == http["span_id"]
    assert service["parent_span_id"] == web["span_id"]
    assert method["parent_span_id"] == service["span_id"]
    attrs = http["attributes"]
    assert attrs["http.request.method"] == "GET"
    assert attrs["http.route"] == "/users/{user_id:int}"
    assert attrs["url.path"] == "/users/42"
    assert attrs["url.scheme"] == "http"
    assert attrs["http.response.status_code"] == 200
    assert attrs["server.address"] == "testserver"
    assert attrs["client.address"] == "testclient"
    assert attrs["user_agent.original"] == "pytest-agent"
    assert attrs["kind"] == "http" and attrs["target"] == "/users/{user_id:int}"
    assert http["status"] == "ok" and http["status_code"] == 200
    assert web["attributes"]["http.route"] == "/users/{user_id:int}"


def test_sync_endpoint_children_and_mounted_route(span_file: Any, client_for: Any) -> None:
    out = span_file()
    client = client_for()
    assert client.get("/sync/7").status_code == 200
    assert client.get("/api/v1/items/abc").status_code == 200
    spans = out.spans()
    http = named(spans, "http:GET /sync/{user_id}")
    web = named(spans, "web:tests.asgi.app.sync_user")
    service = named(spans, "service:user.profile")
    assert web["parent_span_id"] == http["span_id"]
    assert service["parent_span_id"] == web["span_id"], "a sync endpoint's spans must be children of web:"
    mounted = named(spans, "http:GET /api/v1/items/{item_id}")
    assert named(spans, "web:tests.asgi.app.item")["parent_span_id"] == mounted["span_id"]


def test_mounted_plain_asgi_app(span_file: Any, client_for: Any) -> None:
    out = span_file()
    assert client_for().get("/files/a/b.txt").status_code == 200
    spans = out.spans()
    http = named(spans, "http:GET /files/{path}")
    assert http["attributes"]["url.path"] == "/files/a/b.txt"
    assert named(spans, "web:tests.asgi.app.files")["parent_span_id"] == http["span_id"]


def test_404_and_405_never_use_the_raw_path(span_file: Any, client_for: Any) -> None:
    out = span_file()
    client = client_for()
    assert client.get("/no/such/page/123").status_code == 404
    assert client.get("/api/v1/nothing-here").status_code == 404  # a mount matched, nothing inside
    assert client.delete("/users/5").status_code == 405
    spans = http_spans(out.spans())
    names = sorted(span["name"] for span in spans)
    assert names == ["http:DELETE /users/{user_id:int}", "http:GET", "http:GET"]
    for span in spans:
        assert span["status"] == "ok", "4xx stays ok on server spans"
        assert "/no/such" not in span["name"] and "nothing-here" not in span["name"]
    not_found = [span for span in spans if span["name"] == "http:GET"]
    assert {span["status_code"] for span in not_found} == {404}
    assert all("http.route" not in span["attributes"] for span in not_found)
    method_not_allowed = named(spans, "http:DELETE /users/{user_id:int}")
    assert method_not_allowed["attributes"]["http.response.status_code"] == 405
    assert not any(span["name"].startswith("web:") for span in out.spans()), "no endpoint ran"


def test_head_request(span_file: Any, client_for: Any) -> None:
    out = span_file()
    response = client_for().head("/users/1")
    assert response.status_code == 200 and response.content == b""
    http = named(out.spans(), "http:HEAD /users/{user_id:int}")
    assert http["attributes"]["http.request.method"] == "HEAD"
    assert http["status_code"] == 200


def test_exception_marks_error_and_propagates_unchanged(span_file: Any, client_for: Any) -> None:
    out = span_file()
    client = client_for()
    with pytest.raises(RuntimeError, match=r"^database is down$"):
        client.get("/boom")
    assert client_for(raise_server_exceptions=False).get("/boom").status_code == 500
    spans = [span for span in out.spans() if span["name"] == "http:GET /boom"]
    assert len(spans) == 2
    for http in spans:
        assert http["status"] == "error"
        assert http["status_code"] == 500
        assert http["status_message"] == "RuntimeError: database is down"
        assert http["attributes"]["error.type"] == "RuntimeError"
        assert http["attributes"]["http.response.status_code"] == 500
    webs = [span for span in out.spans() if span["name"] == "web:tests.asgi.app.boom"]
    assert len(webs) == 2 and all(web["status"] == "error" for web in webs)
    assert "database is down" in webs[0]["status_message"]


def test_5xx_is_error_and_4xx_is_ok_with_code(span_file: Any, client_for: Any) -> None:
    out = span_file()
    client = client_for()
    assert client.get("/unavailable").status_code == 503
    assert client.get("/teapot").status_code == 418
    spans = out.spans()
    unavailable = named(spans, "http:GET /unavailable")
    assert (unavailable["status"], unavailable["status_code"]) == ("error", 503)
    teapot = named(spans, "http:GET /teapot")
    assert (teapot["status"], teapot["status_code"]) == ("ok", 418)
    assert teapot["attributes"]["http.response.status_code"] == 418


@pytest.mark.parametrize(("path", "key", "media"), [("/stream", "stream", "text/plain"), ("/sse", "sse", "text/event-stream")])
def test_streaming_span_ends_after_the_last_chunk(span_file: Any, client_for: Any, path: str, key: str, media: str) -> None:
    out = span_file()
    LAST_CHUNK_NS.pop(key, None)
    with client_for().stream("GET", path) as response:
        assert response.headers["content-type"].startswith(media)
        body = b"".join(response.iter_bytes())
    assert body.count(b"\n") >= 3
    http = named(out.spans(), f"http:GET {path}")
    assert http["status"] == "ok" and http["status_code"] == 200
    assert http["end_time_unix_nano"] >= LAST_CHUNK_NS[key], "the span ended before the body was finished"


def test_websocket_is_one_span_for_the_whole_connection(span_file: Any, client_for: Any) -> None:
    out = span_file()
    client = client_for()
    with client.websocket_connect("/ws/lobby", headers={"traceparent": TRACEPARENT}) as ws:
        ws.send_text("hello")
        assert ws.receive_text() == "5"
        ws.send_text("hi")
        assert ws.receive_text() == "2"
        ws.send_text("bye")
    spans = out.spans()
    socket = named(spans, "http:WEBSOCKET /ws/{room}")
    assert socket["kind"] == "server" and socket["status"] == "ok"
    assert (socket["trace_id"], socket["parent_span_id"]) == (REMOTE_TRACE, REMOTE_SPAN)
    assert socket["attributes"]["websocket.close.code"] == 1000
    assert socket["attributes"]["websocket.closed_by"] == "server"
    assert socket["attributes"]["url.scheme"] == "ws"
    web = named(spans, "web:tests.asgi.app.echo")
    assert web["parent_span_id"] == socket["span_id"]
    services = [span for span in spans if span["name"] == "service:user.profile"]
    assert len(services) == 2 and all(span["parent_span_id"] == web["span_id"] for span in services)
    assert not [span for span in spans if "receive" in span["name"] or "send" in span["name"]]


def test_websocket_handler_error(span_file: Any, client_for: Any) -> None:
    out = span_file()
    client = client_for()
    with pytest.raises(ValueError, match="socket handler failed"), client.websocket_connect("/ws/x") as ws:
        ws.send_text("crash")
        ws.receive_text()
    socket = named(out.spans(), "http:WEBSOCKET /ws/{room}")
    assert socket["status"] == "error" and "socket handler failed" in socket["status_message"]


def test_lifespan_events_and_flush_on_shutdown(span_file: Any) -> None:
    from starlette.testclient import TestClient

    from .app import build_app

    out = span_file()
    with TestClient(build_app()):
        pass
    # No force_flush by the test: the middleware flushed on shutdown.
    lines = out.path.read_text().splitlines() if out.path.exists() else []
    assert any('"event:lifespan.shutdown"' in line for line in lines), "shutdown span not flushed"
    spans = out.spans()
    startup = named(spans, "event:lifespan.startup")
    shutdown = named(spans, "event:lifespan.shutdown")
    assert startup["kind"] == shutdown["kind"] == "internal"
    assert startup["status"] == shutdown["status"] == "ok"
    warm = named(spans, "trigger:cache.warm")
    assert warm["parent_span_id"] == startup["span_id"], "startup code runs inside the startup span"


def test_excluded_paths_make_no_spans(span_file: Any, client_for: Any) -> None:
    out = span_file()
    client = client_for(excluded_paths=["^/health$"])
    assert client.get("/health").status_code == 200
    assert client.get("/teapot").status_code == 418
    names = [span["name"] for span in out.spans() if not span["name"].startswith("event:")]
    assert "http:GET /health" not in names and "web:tests.asgi.app.health" not in names
    assert "http:GET /teapot" in names and "web:tests.asgi.app.teapot" in names
    # As with OpenTelemetry's excluded URLs: spans the app makes itself start their own traces.
    (service,) = [span for span in out.spans() if span["name"] == "service:user.profile"]
    assert service["parent_span_id"] == ""


def test_header_capture_with_redaction(span_file: Any, client_for: Any) -> None:
    out = span_file()
    client = client_for(request_headers=["X-Request-Id", "Authorization"], response_headers=["content-type"])
    client.get("/teapot", headers={"x-request-id": "abc-1", "authorization": "Bearer secret", "x-other": "no"})
    attrs = named(out.spans(), "http:GET /teapot")["attributes"]
    assert attrs["http.request.header.x-request-id"] == ["abc-1"]
    assert attrs["http.request.header.authorization"] == ["[REDACTED]"]
    assert "http.request.header.x-other" not in attrs
    assert attrs["http.response.header.content-type"] == ["text/plain; charset=utf-8"]
    assert "secret" not in str(out.spans())


def test_request_and_response_hooks(span_file: Any, client_for: Any) -> None:
    out = span_file()
    seen: list[Any] = []

    def on_request(span: Any, scope: Any) -> None:
        span.set_attribute("app.tenant", dict(scope["headers"])[b"x-tenant"].decode())

    def on_response(span: Any, scope: Any, message: Any) -> None:
        seen.append(message["status"])
        span.set_attribute("app.status_seen", message["status"])

    def broken(span: Any, scope: Any) -> None:
        raise KeyError("hook bug")

    client_for(request_hook=on_request, response_hook=on_response).get("/teapot", headers={"x-tenant": "acme"})
    assert client_for(request_hook=broken).get("/users/1").status_code == 200, "a failing hook must not fail the request"
    spans = out.spans()
    attrs = named(spans, "http:GET /teapot")["attributes"]
    assert attrs["app.tenant"] == "acme" and attrs["app.status_seen"] == 418 and seen == [418]
    assert "hook bug" in named(spans, "http:GET /users/{user_id:int}")["attributes"]["infratrace.hook_error"]


def test_response_traceparent(span_file: Any, client_for: Any) -> None:
    out = span_file()
    response = client_for(response_traceparent=True).get("/users/3", headers={"traceparent": TRACEPARENT})
    http = named(out.spans(), "http:GET /users/{user_id:int}")
    assert response.headers["traceparent"] == f"00-{REMOTE_TRACE}-{http['span_id']}-01"
    assert "traceparent" not in client_for().get("/users/3").headers


@pytest.mark.parametrize(
    "bad",
    ["garbage", f"00-{'0' * 32}-{REMOTE_SPAN}-01", f"ff-{REMOTE_TRACE}-{REMOTE_SPAN}-01", f"00-{REMOTE_TRACE}-xyz-01"],
)
def test_malformed_traceparent_starts_a_new_trace(span_file: Any, client_for: Any, bad: str) -> None:
    out = span_file()
    assert client_for().get("/teapot", headers={"traceparent": bad, "tracestate": "k=v"}).status_code == 418
    http = named(out.spans(), "http:GET /teapot")
    assert http["parent_span_id"] == "" and http["trace_id"] != REMOTE_TRACE
    assert re.fullmatch("[0-9a-f]{32}", http["trace_id"])


def test_span_budget_counts_the_excess(span_file: Any, client_for: Any) -> None:
    out = span_file()
    before = infratrace.stats()["budget_dropped_count"]
    assert client_for(span_budget=5).get("/loop?n=20").status_code == 200
    spans = out.spans()
    steps = [span for span in spans if span["name"].startswith("method:loop.step")]
    assert len(steps) == 4, "web: takes one of the 5"
    http = named(spans, "http:GET /loop")
    assert http["attributes"]["infratrace.spans_dropped"] == 16
    assert infratrace.stats()["budget_dropped_count"] - before == 16
    # The budget is per request: the next request starts afresh.
    client_for(span_budget=5).get("/loop?n=2")
    assert len([span for span in out.spans() if span["name"].startswith("method:loop.step")]) == 6


def test_record_messages_as_events_not_spans(span_file: Any, client_for: Any) -> None:
    out = span_file()
    client_for(record_messages=True).post("/sync/1", content=b"payload")
    spans = out.spans()
    http = named(spans, "http:POST /sync/{user_id}")
    events = [(event["name"], event["attributes"].get("asgi.direction")) for event in http.get("events", [])]
    assert ("http.response.start", "send") in events and ("http.response.body", "send") in events
    assert all(not span["name"].startswith("asgi") for span in spans)
    plain = client_for()
    plain.get("/teapot")
    assert not named(out.spans(), "http:GET /teapot").get("events")


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"span_budget": -1}, "TraceMiddleware.span_budget"),
        ({"excluded_paths": ["("]}, "TraceMiddleware.excluded_paths[0]"),
        ({"record_messages": "yes"}, "TraceMiddleware.record_messages"),
        ({"request_hook": "no_such_module:hook"}, "TraceMiddleware.request_hook"),
        ({"sample": 1}, "TraceMiddleware.sample"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, Any], key: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    with pytest.raises(ConfigError) as info:
        TraceMiddleware(app, **options)
    assert info.value.key == key and key in str(info.value)


def test_tracing_errors_never_reach_the_app(span_file: Any, client_for: Any) -> None:
    class BrokenHook:
        def __getattr__(self, name: str) -> Callable[..., Any]:
            def fail(*args: Any, **kwargs: Any) -> Any:
                raise RuntimeError("tracer is broken")

            return fail

    span_file()
    client = client_for()
    previous = infratrace.get_hook()
    infratrace.set_hook(BrokenHook())  # type: ignore[arg-type]
    try:
        response = client.get("/users/9")
        assert response.status_code == 200 and response.json()["id"] == 9
        with client.stream("GET", "/stream") as streamed:
            assert b"".join(streamed.iter_bytes()).count(b"chunk") == 3
    finally:
        infratrace.set_hook(previous)


def test_a_replacement_hook_gets_both_spans_and_a_copy_of_the_attributes(span_file: Any, client_for: Any) -> None:
    """The built-in tracer is called directly when it is installed; any other hook gets
    the http: span, the web: child (through infratrace.begin) and dicts of its own."""
    tracer = infratrace.get_hook()
    begun: list[tuple[str, str, dict[str, Any]]] = []

    class Recording:
        def __getattr__(self, name: str) -> Any:
            return getattr(tracer, name)

        def begin(self, name: str, attrs: Any = None, **kwargs: Any) -> Any:
            begun.append(("begin", name, attrs))
            return tracer.begin(name, attrs, **kwargs)

        def start_span(self, name: str, attrs: Any = None, **kwargs: Any) -> Any:
            begun.append(("start_span", name, attrs))
            return tracer.start_span(name, attrs, **kwargs)

    out = span_file()
    client = client_for()
    infratrace.set_hook(Recording())  # type: ignore[arg-type]
    try:
        for _ in range(2):
            assert client.get("/users/7").status_code == 200
    finally:
        infratrace.set_hook(tracer)
    assert [(how, name) for how, name, _ in begun if name.startswith(("http:", "web:"))] == [
        ("start_span", "http:GET"),
        ("begin", "web:tests.asgi.app.user"),
    ] * 2
    http_attrs = [attrs for how, name, attrs in begun if name == "http:GET"]
    assert http_attrs[0] is not http_attrs[1]  # a copy per request, never the shared base
    http = [span for span in out.spans() if span["name"] == "http:GET /users/{user_id:int}"]
    assert len(http) == 2 and all(span["attributes"]["url.path"] == "/users/7" for span in http)


def test_inside_other_middleware_and_around_base_http_middleware(span_file: Any) -> None:
    """Starlette's BaseHTTPMiddleware runs the rest of the app in a task group: the
    route, the web: child and the span's end must survive that."""
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.middleware.gzip import GZipMiddleware
    from starlette.testclient import TestClient

    from .app import build_app

    async def stamp(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["x-stamped"] = "1"
        return response

    out = span_file()
    app = build_app()  # TraceMiddleware added first: the innermost of the user middleware
    app.add_middleware(BaseHTTPMiddleware, dispatch=stamp)
    app.add_middleware(GZipMiddleware)
    inner = build_app()
    inner.user_middleware.clear()
    inner.add_middleware(BaseHTTPMiddleware, dispatch=stamp)
    inner.add_middleware(TraceMiddleware)  # outermost: BaseHTTPMiddleware inside it
    for application in (app, inner):
        with TestClient(application) as client:
            response = client.get("/users/5")
            assert response.headers["x-stamped"] == "1" and response.json()["id"] == 5
    spans = out.spans()
    https = [span for span in spans if span["name"] == "http:GET /users/{user_id:int}"]
    webs = [span for span in spans if span["name"] == "web:tests.asgi.app.user"]
    assert len(https) == 2 and len(webs) == 2
    assert {web["parent_span_id"] for web in webs} == {http["span_id"] for http in https}
    assert all(http["status_code"] == 200 for http in https)


def test_query_strings_only_when_switched_on(span_file: Any, client_for: Any) -> None:
    out = span_file()
    client_for().get("/teapot?auth=a&x=1")
    assert "url.query" not in named(out.spans(), "http:GET /teapot")["attributes"]


def test_query_strings_recorded_with_sensitive_values_redacted(span_file: Any, client_for: Any) -> None:
    out = span_file()
    client_for(record_query=True).get("/teapot?auth=a&x=1")
    assert named(out.spans(), "http:GET /teapot")["attributes"]["url.query"] == "auth=[REDACTED]&x=1"
