"""The Flask extension through Flask's test client: span names, parent links, status
rules, streaming, options and configuration."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Blueprint, Flask, Response, abort, stream_with_context
from flask import request as flask_request
from infratrace_flask import InfraTrace

import infratrace
from infratrace import ConfigError

from .conftest import Trace

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
SpansFn = Callable[[], Trace]


def add_routes(app: Flask) -> None:
    @app.get("/users/<int:user_id>")
    def show_user(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    @app.route("/files/<path:name>", methods=["GET", "PUT"])
    def file(name: str) -> str:
        return name

    @app.get("/")
    def index() -> str:
        return "home"

    api = Blueprint("api", __name__, url_prefix="/api")

    @api.get("/items/<item_id>")
    def item(item_id: str) -> str:
        return item_id

    app.register_blueprint(api)


@pytest.mark.parametrize(
    ("method", "url", "name", "route", "endpoint"),
    [
        ("GET", "/users/42", "http:GET /users/<int:user_id>", "/users/<int:user_id>", "show_user"),
        ("PUT", "/files/a/b.txt", "http:PUT /files/<path:name>", "/files/<path:name>", "file"),
        ("GET", "/", "http:GET /", "/", "index"),
        ("GET", "/api/items/x1", "http:GET /api/items/<item_id>", "/api/items/<item_id>", "api.item"),
        ("HEAD", "/users/7", "http:HEAD /users/<int:user_id>", "/users/<int:user_id>", "show_user"),
    ],
)
def test_rule_names_and_attributes(
    spans: SpansFn, make_app: Callable[..., Flask], method: str, url: str, name: str, route: str, endpoint: str
) -> None:
    app = make_app()
    add_routes(app)
    response = app.test_client().open(url, method=method, headers={"User-Agent": "pytest-ua"})
    assert response.status_code == 200
    trace = spans()
    server = trace.one(name)
    assert server["kind"] == "server"
    assert server["status"] == "ok"
    assert server["parent_span_id"] == ""
    attrs = server["attributes"]
    assert attrs["http.route"] == route
    assert attrs["target"] == route
    assert attrs["http.request.method"] == method
    assert attrs["http.response.status_code"] == 200
    assert attrs["url.path"] == url
    assert attrs["url.scheme"] == "http"
    assert attrs["server.address"] == "localhost"
    assert attrs["client.address"] == "127.0.0.1"
    assert attrs["user_agent.original"] == "pytest-ua"
    assert attrs["module"] == "flask"
    view = trace.one(f"web:{endpoint}")
    assert view["kind"] == "internal"
    assert view["parent_span_id"] == server["span_id"]
    assert view["trace_id"] == server["trace_id"]
    assert view["attributes"]["target"] == endpoint
    assert trace.names() == [f"web:{endpoint}", name]


@pytest.mark.parametrize(
    ("method", "url", "status", "name"),
    [("GET", "/no/such/page", 404, "http:GET"), ("POST", "/users/1", 405, "http:POST")],
)
def test_unmatched_requests_are_named_by_method_only(
    spans: SpansFn, make_app: Callable[..., Flask], method: str, url: str, status: int, name: str
) -> None:
    app = make_app()
    add_routes(app)
    response = app.test_client().open(url, method=method)
    assert response.status_code == status
    response.close()  # as a server does when the body is sent
    trace = spans()
    assert trace.names() == [name]  # no raw path in the name, no web: span
    server = trace.one(name)
    assert server["status"] == "ok"  # 4xx is not a server error
    assert server["status_code"] == status
    assert server["attributes"]["http.response.status_code"] == status
    assert server["attributes"]["url.path"] == url
    assert "http.route" not in server["attributes"]


def test_unhandled_exception_is_an_error_and_flask_answers_500(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    app = make_app()

    @app.get("/fail")
    def fail() -> str:
        raise LookupError("no such order")

    response = app.test_client().get("/fail")
    assert response.status_code == 500
    assert b"Internal Server Error" in response.data
    trace = spans()
    server = trace.one("http:GET /fail")
    assert server["status"] == "error"
    assert server["status_code"] == 500
    assert server["status_message"] == "LookupError: no such order"
    assert server["attributes"]["error.type"] == "LookupError"
    view = trace.one("web:fail")
    assert view["status"] == "error"
    assert view["status_message"] == "LookupError: no such order"


@pytest.mark.parametrize("config", [{"TESTING": True}, {"PROPAGATE_EXCEPTIONS": True}])
def test_exception_propagates_unchanged_in_testing_mode(
    spans: SpansFn, make_app: Callable[..., Flask], config: dict[str, Any]
) -> None:
    raised = KeyError("missing")

    def build(app: Flask) -> Flask:
        app.config.update(config)

        @app.get("/fail")
        def fail() -> str:
            raise raised

        return app

    bare = build(Flask("bare"))
    with pytest.raises(KeyError) as bare_info:
        bare.test_client().get("/fail")
    app = build(make_app())
    with pytest.raises(KeyError) as info:
        app.test_client().get("/fail")
    assert info.value is raised is bare_info.value
    server = spans().one("http:GET /fail")
    assert server["status"] == "error"
    assert server["status_code"] == 500
    assert server["attributes"]["error.type"] == "KeyError"
    assert server["status_message"] == "KeyError: 'missing'"


def test_abort_4xx_keeps_spans_ok_and_5xx_is_an_error(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    app = make_app()

    @app.get("/gone/<int:code>")
    def gone(code: int) -> str:
        abort(code)

    client = app.test_client()
    assert client.get("/gone/404").get_data() and client.get("/gone/503").get_data()
    trace = spans()
    views = [span for span in trace.spans if span["name"] == "web:gone"]
    servers = [span for span in trace.spans if span["name"] == "http:GET /gone/<int:code>"]
    assert [(s["status"], s["status_code"]) for s in views] == [("ok", 404), ("error", 503)]
    assert [(s["status"], s["status_code"]) for s in servers] == [("ok", 404), ("error", 503)]
    assert servers[1]["status_message"] == "HTTP 503"


def test_streamed_response_ends_when_the_stream_ends(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    app = make_app()

    @app.get("/stream")
    def stream() -> Response:
        @stream_with_context
        def body() -> Iterator[str]:
            for index in range(3):
                with infratrace.begin(f"chunk:{index}"):
                    yield f"{index}\n"

        return Response(body())

    response = app.test_client().get("/stream", buffered=False)
    assert response.status_code == 200
    before = spans()
    assert "http:GET /stream" not in before.names()  # the body is still to come
    assert response.get_data() == b"0\n1\n2\n"
    trace = spans()
    server = trace.one("http:GET /stream")
    chunks = [trace.one(f"chunk:{index}") for index in range(3)]
    assert all(chunk["parent_span_id"] == server["span_id"] for chunk in chunks)
    assert server["end_time_unix_nano"] >= chunks[-1]["end_time_unix_nano"]
    assert trace.one("web:stream")["end_time_unix_nano"] <= chunks[0]["start_time_unix_nano"]
    assert server["status"] == "ok"
    assert "infratrace.response_incomplete" not in server["attributes"]


def test_stream_closed_early_and_stream_failing(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    app = make_app()

    @app.get("/endless")
    def endless() -> Response:
        def body() -> Iterator[bytes]:
            while True:
                yield b"x"

        return Response(body())

    @app.get("/broken")
    def broken() -> Response:
        def body() -> Iterator[bytes]:
            yield b"start"
            raise OSError("disk gone")

        return Response(body())

    client = app.test_client()
    response = client.get("/endless", buffered=False)
    assert next(iter(response.response)) == b"x"
    response.close()  # the client went away
    response = client.get("/broken", buffered=False)
    with pytest.raises(OSError, match="disk gone"):
        response.get_data()
    trace = spans()
    endless_span = trace.one("http:GET /endless")
    assert endless_span["attributes"]["infratrace.response_incomplete"] is True
    broken_span = trace.one("http:GET /broken")
    assert broken_span["status"] == "error"
    assert broken_span["status_message"] == "OSError: disk gone"


def test_service_and_method_calls_are_children_of_the_view(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    app = make_app()

    @infratrace.method("user.hash")
    def hash_name(name: str) -> str:
        return name[::-1]

    @infratrace.service("user.login")
    def login(name: str) -> str:
        return hash_name(name)

    @app.post("/login/<name>")
    def do_login(name: str) -> str:
        return login(name)

    assert app.test_client().post("/login/ada").get_data() == b"ada"
    trace = spans()
    server = trace.one("http:POST /login/<name>")
    view = trace.one("web:do_login")
    service = trace.one("service:user.login")
    method = trace.one("method:user.hash")
    assert view["parent_span_id"] == server["span_id"]
    assert service["parent_span_id"] == view["span_id"]
    assert method["parent_span_id"] == service["span_id"]
    assert {span["trace_id"] for span in trace.spans} == {server["trace_id"]}


def test_async_view_gets_a_web_span(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    pytest.importorskip("asgiref")
    app = make_app()

    @app.get("/async/<int:n>")
    async def async_view(n: int) -> str:
        with infratrace.begin("method:inside"):
            return str(n * 2)

    assert app.test_client().get("/async/21").get_data() == b"42"
    trace = spans()
    view = trace.one("web:async_view")
    assert view["parent_span_id"] == trace.one("http:GET /async/<int:n>")["span_id"]
    assert trace.one("method:inside")["parent_span_id"] == view["span_id"]


@pytest.mark.parametrize(
    ("header", "continued"),
    [
        (f"00-{TRACE_ID}-{PARENT_ID}-01", True),
        (f"00-{TRACE_ID.upper()}-{PARENT_ID}-01", False),
        (f"00-{'0' * 32}-{PARENT_ID}-01", False),
        ("garbage", False),
        (f"00-{TRACE_ID}-{PARENT_ID}-01-extra", False),
    ],
)
def test_incoming_traceparent(spans: SpansFn, make_app: Callable[..., Flask], header: str, continued: bool) -> None:
    app = make_app(response_traceparent=True)
    add_routes(app)
    response = app.test_client().get("/users/1", headers={"traceparent": header, "tracestate": "vendor=abc"})
    assert response.status_code == 200
    server = spans().one("http:GET /users/<int:user_id>")
    if continued:
        assert (server["trace_id"], server["parent_span_id"]) == (TRACE_ID, PARENT_ID)
    else:
        assert server["trace_id"] != TRACE_ID and server["parent_span_id"] == ""
    assert response.headers["traceparent"] == f"00-{server['trace_id']}-{server['span_id']}-01"


def test_no_traceparent_header_unless_asked(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    app = make_app()
    add_routes(app)
    assert "traceparent" not in app.test_client().get("/").headers


def test_excluded_paths_make_no_spans(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    app = make_app(excluded_paths=[r"^/health", "metrics$"])

    @app.get("/health")
    def health() -> str:
        with infratrace.begin("method:probe"):
            return "ok"

    @app.get("/app/metrics")
    def metrics() -> str:
        return "m"

    @app.get("/healthy-users")  # matches ^/health too: a regex, not a prefix list
    def users() -> str:
        return "u"

    @app.get("/ok")
    def ok() -> str:
        return health()

    client = app.test_client()
    for url in ("/health", "/app/metrics", "/healthy-users", "/ok"):
        assert client.get(url).status_code == 200
    trace = spans()
    # the app's own spans are still recorded (as roots); the adapter makes none
    assert sorted(trace.names()) == ["http:GET /ok", "method:probe", "method:probe", "web:ok"]
    probes = [span for span in trace.spans if span["name"] == "method:probe"]
    assert [probe["parent_span_id"] for probe in probes] == ["", trace.one("web:ok")["span_id"]]


def test_header_capture_with_redaction(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    app = make_app(
        request_headers=["X-Request-Id", "Authorization", "Content-Type", "X-Absent"],
        response_headers=["x-version", "set-cookie"],
        sensitive_headers=["x-version"],
    )

    @app.post("/echo")
    def echo() -> Response:
        response = Response("done")
        response.headers["X-Version"] = "7"
        response.set_cookie("session", "secret")
        return response

    headers = {"X-Request-Id": "r-1", "Authorization": "Bearer hunter2", "Cookie": "a=b"}
    assert app.test_client().post("/echo", headers=headers, json={"a": 1}).status_code == 200
    attrs = spans().one("http:POST /echo")["attributes"]
    assert attrs["http.request.header.x-request-id"] == ["r-1"]
    assert attrs["http.request.header.authorization"] == ["[REDACTED]"]
    assert attrs["http.request.header.content-type"] == ["application/json"]
    assert attrs["http.response.header.x-version"] == ["[REDACTED]"]
    assert attrs["http.response.header.set-cookie"] == ["[REDACTED]"]
    assert not any(key.endswith(("cookie", "x-absent")) and "request" in key for key in attrs)


def test_request_and_response_hooks(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    seen: list[Any] = []

    def on_request(span: Any, request: Any) -> None:
        span.set_attribute("app.tenant", request.headers.get("X-Tenant"))
        span.set_attribute("app.name_at_hook", span.name)

    def on_response(span: Any, request: Any, response: Any) -> None:
        seen.append(response)
        span.set_attribute("app.length", response.content_length)

    app = make_app(request_hook=on_request, response_hook=on_response)
    add_routes(app)
    client = app.test_client()
    assert client.get("/users/5", headers={"X-Tenant": "acme"}).status_code == 200
    attrs = spans().one("http:GET /users/<int:user_id>")["attributes"]
    assert attrs["app.tenant"] == "acme"
    assert attrs["app.name_at_hook"] == "http:GET /users/<int:user_id>"
    assert attrs["app.length"] == seen[0].content_length > 0


def test_failing_hooks_never_reach_the_app(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    def broken(*args: Any) -> None:
        raise ValueError("hook bug")

    app = make_app(request_hook=broken, response_hook=broken)
    add_routes(app)
    assert app.test_client().get("/users/5").get_json() == {"id": 5}
    attrs = spans().one("http:GET /users/<int:user_id>")["attributes"]
    assert attrs["infratrace.hook_error"] == "response_hook: ValueError: hook bug"


def test_broken_tracer_never_reaches_the_app(make_app: Callable[..., Flask]) -> None:
    class BrokenHook:
        def __getattr__(self, name: str) -> Any:
            def fail(*args: Any, **kwargs: Any) -> Any:
                raise RuntimeError("tracer down")

            return fail

    app = make_app()
    add_routes(app)
    infratrace.set_hook(BrokenHook())  # type: ignore[arg-type]
    response = app.test_client().get("/users/3")
    assert response.get_json() == {"id": 3}


def test_span_budget_limits_detail_spans(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    app = make_app(span_budget=5)

    @app.get("/loop")
    def loop() -> str:
        for index in range(20):
            with infratrace.begin("method:step", {"i": index}):
                pass
        return "done"

    client = app.test_client()
    assert client.get("/loop").get_data() == b"done"
    assert client.get("/loop").get_data() == b"done"  # a fresh budget per request
    trace = spans()
    steps = [span for span in trace.spans if span["name"] == "method:step"]
    assert len(steps) == 2 * 4  # 5 = the web: span + 4 steps
    servers = [span for span in trace.spans if span["name"] == "http:GET /loop"]
    assert [s["attributes"]["infratrace.spans_dropped"] for s in servers] == [16, 16]


def test_app_factory_init_app_with_several_apps(spans: SpansFn) -> None:
    ext = InfraTrace(service="shop")
    apps = []
    for name, options in (("first", {}), ("second", {"excluded_paths": ["^/ping$"], "service": "admin"})):
        app = Flask(name)
        app.config["INFRATRACE_FLASK"] = options

        @app.get("/ping")
        def ping() -> str:
            return "pong"

        ext.init_app(app)
        ext.init_app(app)  # twice: nothing is wrapped twice
        apps.append(app)
    for app in apps:
        assert app.test_client().get("/ping").get_data() == b"pong"
    trace = spans()
    assert trace.names() == ["web:ping", "http:GET /ping"]
    assert trace.one("http:GET /ping")["attributes"]["service"] == "shop"
    assert trace.one("web:ping")["attributes"]["service"] == "shop"


def test_infratrace_config_from_app_config(tmp_path: Any, make_app: Callable[..., Flask]) -> None:
    output = tmp_path / "from-config.jsonl"
    app = Flask("configured")
    app.config["INFRATRACE"] = {
        "trace": {"driver": "file", "json": True, "setting": {"output": str(output)}},
        "infratrace": {"project": "flask-test"},
    }
    InfraTrace(app)

    @app.get("/")
    def index() -> str:
        return "x"

    try:
        assert app.test_client().get("/").get_data() == b"x"
        assert infratrace.force_flush(10)
        lines = output.read_text().splitlines()
        assert len(lines) == 2 and '"project":"flask-test"' in lines[1].replace(" ", "")
    finally:
        infratrace.shutdown(5)


@pytest.mark.parametrize(
    ("config", "options", "key"),
    [
        ({"INFRATRACE_FLASK": {"excluded_paths": ["("]}}, {}, "INFRATRACE_FLASK.excluded_paths[0]"),
        ({"INFRATRACE_FLASK": {"span_budget": -1}}, {}, "INFRATRACE_FLASK.span_budget"),
        ({"INFRATRACE_FLASK": {"exclude_paths": []}}, {}, "INFRATRACE_FLASK.exclude_paths"),
        ({}, {"signals": ["request_begun"]}, "INFRATRACE_FLASK.signals[0]"),
        ({}, {"signals_exclude": [3]}, "INFRATRACE_FLASK.signals_exclude[0]"),
        ({"INFRATRACE_FLASK": ["x"]}, {}, "INFRATRACE_FLASK"),
        ({"INFRATRACE": {"trace": {"driver": "nope"}}}, {}, "trace.driver"),
    ],
)
def test_bad_options_fail_at_init_naming_the_key(config: dict[str, Any], options: dict[str, Any], key: str) -> None:
    app = Flask("bad")
    app.config.update(config)
    with pytest.raises(ConfigError) as info:
        InfraTrace(app, **options)
    assert info.value.key == key
    assert key in str(info.value)


def test_rule_kept_when_a_before_request_hook_answers(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    app = make_app()
    add_routes(app)

    @app.before_request
    def require_login() -> tuple[str, int] | None:
        return ("login first", 401) if flask_request.headers.get("X-User") is None else None

    client = app.test_client()
    assert client.get("/users/9").status_code == 401
    assert client.get("/users/9", headers={"X-User": "ada"}).get_json() == {"id": 9}
    trace = spans()
    servers = [span for span in trace.spans if span["name"] == "http:GET /users/<int:user_id>"]
    assert [(s["status"], s["status_code"]) for s in servers] == [("ok", 401), ("ok", 200)]
    assert trace.names().count("web:show_user") == 1  # the view ran once


def test_query_strings_only_when_switched_on_and_redacted(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    quiet = make_app()

    @quiet.get("/q")
    def q() -> str:
        return "ok"

    assert quiet.test_client().get("/q?token=t&x=1").status_code == 200
    assert "url.query" not in spans().one("http:GET /q")["attributes"]


def test_query_strings_recorded_with_sensitive_values_redacted(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    app = make_app(record_query=True)

    @app.get("/q")
    def q() -> str:
        return "ok"

    assert app.test_client().get("/q?token=t&x=1&client_secret=s").status_code == 200
    attrs = spans().one("http:GET /q")["attributes"]
    assert attrs["url.query"] == "token=[REDACTED]&x=1&client_secret=[REDACTED]"


def test_error_pages_end_their_span_without_the_body_being_read(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    """Tests that never read an error response's body still get its http: span: a
    werkzeug error page, abort() and an unhandled exception's 500 are complete after
    after_request, as a 200 is."""
    app = make_app()

    @app.get("/forbidden")
    def forbidden() -> str:
        abort(403)

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    app.testing = False  # a 500 page instead of the exception
    from flask.testing import FlaskClient

    app.test_client_class = FlaskClient  # Flask's own client: it does not read the bodies
    client = app.test_client()
    before = infratrace.stats()["ended_count"]
    responses = [client.get(path) for path in ("/missing", "/forbidden", "/boom")]  # kept, bodies never read
    assert [r.status_code for r in responses] == [404, 403, 500]
    assert infratrace.stats()["ended_count"] - before == 1 + 2 + 2  # http: spans (and web: spans of the views)
    names = [s["name"] for s in spans().spans if s["name"].startswith("http:")]
    assert sorted(names) == ["http:GET", "http:GET /boom", "http:GET /forbidden"]


def test_with_client_and_a_stream_with_context_body_behave_as_without_tracing(
    spans: SpansFn, make_app: Callable[..., Flask]
) -> None:
    """``with client:`` preserves the request context and pops it at the block's end; a
    ``stream_with_context`` body pushes Flask's contexts again while it is read. Both
    must happen in the caller's context, or the pop fails (``Token ... was created in a
    different Context``) and the request context leaks into the caller."""
    import flask

    app = make_app()

    @app.get("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[str]:
            with infratrace.begin("method:chunk"):
                yield "a"
            yield flask.request.args.get("x", "?")

        return app.response_class(stream_with_context(chunks()))

    from flask.testing import FlaskClient

    app.test_client_class = FlaskClient  # Flask's own client, as a test suite uses it
    client = app.test_client()
    with client:
        body = client.get("/stream?x=1").get_data(as_text=True)
        assert flask.request.path == "/stream"  # preserved, as without tracing
    assert body == "a1"
    assert not flask.has_request_context()  # nothing leaked into the caller
    trace = spans()
    assert trace.one("method:chunk")["parent_span_id"] == trace.one("http:GET /stream")["span_id"]
