"""The per-request state behind every ``http:`` span, observed through Flask's test
client and the written spans: the status rules, naming from the matched rule, the
span budget and exceptions. Each rule is checked on both ways the status reaches the
span: the plain ``start_response`` (no response header recorded or added) and the one
that also records response headers and adds ``traceparent``."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask, Response, abort
from infratrace_flask import InfraTrace

import infratrace

from .conftest import ClosingClient, Trace

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

SpansFn = Callable[[], Trace]

START_RESPONSE_PATHS = pytest.mark.parametrize(
    "options",
    [{}, {"response_headers": ["x-version"], "response_traceparent": True}],
    ids=["status-only", "with-response-headers"],
)


def servers(trace: Trace) -> list[dict[str, Any]]:
    return [span for span in trace.spans if span["kind"] == "server"]


# -- status ---------------------------------------------------------------------------


@START_RESPONSE_PATHS
@pytest.mark.parametrize(
    ("url", "code", "status", "message", "error_type"),
    [
        ("/answer/200", 200, "ok", "", None),
        ("/answer/201", 201, "ok", "", None),
        ("/answer/302", 302, "ok", "", None),
        ("/answer/404", 404, "ok", "", None),
        ("/answer/418", 418, "ok", "", None),
        ("/answer/500", 500, "error", "HTTP 500", "500"),
        ("/answer/503", 503, "error", "HTTP 503", "503"),
    ],
)
def test_status_rules(
    spans: SpansFn,
    make_app: Callable[..., Flask],
    options: dict[str, Any],
    url: str,
    code: int,
    status: str,
    message: str,
    error_type: str | None,
) -> None:
    app = make_app(**options)

    @app.get("/answer/<int:code>")
    def answer(code: int) -> Response:
        response = Response("body", status=code)
        response.headers["X-Version"] = "3"
        return response

    response = app.test_client().get(url)
    assert response.status_code == code
    (server,) = servers(spans())
    assert server["name"] == "http:GET /answer/<int:code>"
    assert (server["status"], server["status_code"], server["status_message"]) == (status, code, message)
    attrs = server["attributes"]
    assert attrs["http.response.status_code"] == code
    assert attrs.get("error.type") == error_type
    assert "exception" not in [event["name"] for event in server.get("events", [])]
    if options:
        assert attrs["http.response.header.x-version"] == ["3"]
        assert response.headers["traceparent"] == f"00-{server['trace_id']}-{server['span_id']}-01"
    else:
        assert "http.response.header.x-version" not in attrs
        assert "traceparent" not in response.headers


@START_RESPONSE_PATHS
def test_an_unhandled_exception_is_an_error_with_the_exception(
    spans: SpansFn, make_app: Callable[..., Flask], options: dict[str, Any]
) -> None:
    app = make_app(**options)

    @app.get("/orders/<order_id>")
    def order(order_id: str) -> str:
        raise LookupError(f"no order {order_id}")

    assert app.test_client().get("/orders/7").status_code == 500
    (server,) = servers(spans())
    assert server["name"] == "http:GET /orders/<order_id>"  # the rule is known despite the failure
    assert (server["status"], server["status_code"]) == ("error", 500)
    assert server["status_message"] == "LookupError: no order 7"
    assert server["attributes"]["error.type"] == "LookupError"
    (event,) = [event for event in server["events"] if event["name"] == "exception"]
    assert event["attributes"]["exception.type"] == "LookupError"
    assert "no order 7" in event["attributes"]["exception.stacktrace"]


def test_an_exception_an_error_handler_answers_is_an_http_status(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    app = make_app()

    @app.errorhandler(KeyError)
    def missing(exc: KeyError) -> tuple[str, int]:
        return "gone", 410

    @app.errorhandler(PermissionError)
    def broken(exc: PermissionError) -> tuple[str, int]:
        return "broken", 502

    @app.get("/key")
    def key() -> str:
        raise KeyError("k")

    @app.get("/perm")
    def perm() -> str:
        raise PermissionError("p")

    client = app.test_client()
    assert client.get("/key").status_code == 410
    assert client.get("/perm").status_code == 502
    by_name = {span["name"]: span for span in servers(spans())}
    gone, bad_gateway = by_name["http:GET /key"], by_name["http:GET /perm"]
    # handled by the app: the answer decides, the exception is the view's business
    assert (gone["status"], gone["status_code"], gone["status_message"]) == ("ok", 410, "")
    assert (bad_gateway["status"], bad_gateway["status_code"]) == ("error", 502)
    assert bad_gateway["status_message"] == "HTTP 502"
    assert not gone.get("events") and not bad_gateway.get("events")


def test_an_exception_leaving_flask_is_a_500_and_reaches_the_caller(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    app = make_app()
    app.config["TESTING"] = True
    raised = ValueError("propagated")

    @app.get("/fail/<int:n>")
    def fail(n: int) -> str:
        raise raised

    with pytest.raises(ValueError) as info:
        app.test_client().get("/fail/1")
    assert info.value is raised
    (server,) = servers(spans())
    assert server["name"] == "http:GET /fail/<int:n>"
    assert (server["status"], server["status_code"]) == ("error", 500)
    assert server["attributes"]["http.response.status_code"] == 500  # what the server answers


# -- below Flask: the WSGI calls Flask never makes itself --------------------------------


def app_around(inner: Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]], **options: Any) -> Flask:
    """A traced app whose ``wsgi_app`` is ``inner`` (installed before the extension, as
    another WSGI middleware would be)."""
    app = Flask("tests.flask.raw")
    app.test_client_class = ClosingClient
    app.wsgi_app = inner  # type: ignore[method-assign,assignment]
    InfraTrace(app, **options)
    return app


@START_RESPONSE_PATHS
def test_exc_info_is_passed_to_the_server(spans: SpansFn, options: dict[str, Any]) -> None:
    error = RuntimeError("headers already sent")

    def inner(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        try:
            raise error
        except RuntimeError:
            # Werkzeug's test server re-raises exc_info, as PEP 3333 allows.
            start_response("500 INTERNAL SERVER ERROR", [], sys.exc_info())
        return [b"never"]

    with pytest.raises(RuntimeError) as info:
        app_around(inner, **options).test_client().get("/x")
    assert info.value is error
    (server,) = servers(spans())
    assert (server["name"], server["status"], server["status_code"]) == ("http:GET", "error", 500)
    assert server["status_message"] == "RuntimeError: headers already sent"


def test_an_exception_before_start_response_is_a_500(spans: SpansFn) -> None:
    def inner(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        raise MemoryError("out")

    with pytest.raises(MemoryError):
        app_around(inner).test_client().get("/x")
    (server,) = servers(spans())
    assert (server["status"], server["status_code"], server["attributes"]["error.type"]) == ("error", 500, "MemoryError")


def test_a_status_line_without_a_code_leaves_the_code_unrecorded(spans: SpansFn) -> None:
    def inner(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("OK", [("Content-Length", "2")])
        return [b"ok"]

    app_around(inner).test_client().get("/x")
    (server,) = servers(spans())
    assert server["status"] == "ok"
    assert "http.response.status_code" not in server["attributes"]


# -- route naming ----------------------------------------------------------------------


def test_each_request_is_named_from_its_own_rule(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    app = make_app(response_hook=lambda span, request, response: span.set_attribute("app.path", request.path))

    @app.route("/items/<int:item_id>", methods=["GET", "DELETE"])
    def item(item_id: int) -> str:
        return str(item_id)

    client = app.test_client()
    for url, method in [("/items/1", "GET"), ("/items/2", "GET"), ("/items/3", "DELETE"), ("/nope", "GET"), ("/items/4", "GET")]:
        client.open(url, method=method)
    found = [
        (span["name"], span["attributes"].get("http.route"), span["attributes"]["target"], span["attributes"]["url.path"])
        for span in servers(spans())
    ]
    assert found == [
        ("http:GET /items/<int:item_id>", "/items/<int:item_id>", "/items/<int:item_id>", "/items/1"),
        ("http:GET /items/<int:item_id>", "/items/<int:item_id>", "/items/<int:item_id>", "/items/2"),
        ("http:DELETE /items/<int:item_id>", "/items/<int:item_id>", "/items/<int:item_id>", "/items/3"),
        ("http:GET", None, "/nope", "/nope"),  # nothing matched: no rule, the path as target
        ("http:GET /items/<int:item_id>", "/items/<int:item_id>", "/items/<int:item_id>", "/items/4"),
    ]
    # one request's attributes never show up on another's
    assert [span["attributes"]["app.path"] for span in servers(spans())] == [
        "/items/1",
        "/items/2",
        "/items/3",
        "/nope",
        "/items/4",
    ]


def test_an_unknown_method_is_named_other(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    app = make_app()

    @app.route("/dav", methods=["PROPFIND"])
    def dav() -> str:
        return "props"

    assert app.test_client().open("/dav", method="PROPFIND").status_code == 200
    (server,) = servers(spans())
    assert server["name"] == "http:_OTHER /dav"
    assert server["attributes"]["http.request.method"] == "_OTHER"
    assert server["attributes"]["http.request.method_original"] == "PROPFIND"


# -- span budget -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "inner_spans", "recorded", "dropped"),
    [
        (5, 3, 3, None),  # within the budget: nothing reported
        (5, 4, 4, None),  # exactly the budget (web: + 4)
        (5, 10, 4, 6),
        (0, 50, 50, None),  # 0 = unlimited
    ],
)
def test_span_budget(
    spans: SpansFn, make_app: Callable[..., Flask], limit: int, inner_spans: int, recorded: int, dropped: int | None
) -> None:
    app = make_app(span_budget=limit)

    @app.get("/work")
    def work() -> str:
        for _ in range(inner_spans):
            with infratrace.begin("method:step"):
                pass
        return "done"

    assert app.test_client().get("/work").get_data() == b"done"
    trace = spans()
    assert trace.names().count("method:step") == recorded
    assert trace.one("web:work")["status"] == "ok"
    assert trace.one("http:GET /work")["attributes"].get("infratrace.spans_dropped") == dropped
    assert infratrace.stats()["budget_dropped_count"] >= (dropped or 0)


def test_spans_of_a_streamed_body_count_against_the_request_budget(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    app = make_app(span_budget=3)

    @app.get("/stream")
    def stream() -> Response:
        def body() -> Iterator[bytes]:
            for _ in range(5):
                with infratrace.begin("method:chunk"):
                    yield b"."

        return Response(body())

    assert app.test_client().get("/stream").get_data() == b"....."
    trace = spans()
    assert trace.names().count("method:chunk") == 2  # web: + 2 chunks
    assert trace.one("http:GET /stream")["attributes"]["infratrace.spans_dropped"] == 3


# -- ending once -----------------------------------------------------------------------


def test_a_body_that_fails_then_is_closed_ends_the_span_once(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    app = make_app()

    @app.get("/broken")
    def broken() -> Response:
        def body() -> Iterator[bytes]:
            yield b"start"
            raise OSError("disk gone")

        return Response(body())

    response = app.test_client().get("/broken", buffered=False)
    with pytest.raises(OSError, match="disk gone"):
        response.get_data()
    response.close()
    (server,) = servers(spans())
    assert (server["status"], server["status_message"]) == ("error", "OSError: disk gone")
    assert server["status_code"] == 200  # the status line had already been sent
    assert "infratrace.response_incomplete" not in server["attributes"]


def test_a_4xx_from_abort_before_the_view_body_keeps_the_rule(spans: SpansFn, make_app: Callable[..., Flask]) -> None:
    app = make_app()

    @app.get("/private/<name>")
    def private(name: str) -> str:
        abort(403)

    assert app.test_client().get("/private/x").status_code == 403
    (server,) = servers(spans())
    assert (server["name"], server["status"], server["status_code"]) == ("http:GET /private/<name>", "ok", 403)


# -- the request line and the server ---------------------------------------------------


def test_an_environ_without_host_or_script_name_falls_back_to_the_server(spans: SpansFn) -> None:
    app = Flask(__name__)
    InfraTrace(app)

    @app.get("/users/<int:user_id>")
    def show_user(user_id: int) -> str:
        return str(user_id)

    environ: dict[str, Any] = {  # HTTP/1.0: no Host; SCRIPT_NAME and REMOTE_ADDR may be left out when empty
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/users/7",
        "SERVER_NAME": "backend.internal",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.0",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
    }
    statuses: list[str] = []
    body = app(environ, lambda status, headers, exc_info=None: statuses.append(status))  # type: ignore[arg-type,func-returns-value]
    assert b"".join(body) == b"7" and statuses == ["200 OK"]
    (server,) = servers(spans())
    attrs = server["attributes"]
    assert server["name"] == "http:GET /users/<int:user_id>"
    assert (attrs["server.address"], attrs["server.port"], attrs["network.protocol.version"]) == ("backend.internal", 8080, "1.0")
    assert (attrs["url.path"], attrs["http.route"]) == ("/users/7", "/users/<int:user_id>")
    assert "client.address" not in attrs and "user_agent.original" not in attrs


def test_the_response_hook_sees_the_final_response(spans: SpansFn) -> None:
    seen: list[str | None] = []
    app = Flask(__name__)

    @app.after_request
    def stamp(response: Response) -> Response:  # registered before init_app: Flask runs it last
        response.headers["X-Stamp"] = "late"
        return response

    InfraTrace(app, response_hook=lambda span, request, response: seen.append(response.headers.get("X-Stamp")))

    @app.get("/ok")
    def ok() -> str:
        return "ok"

    assert app.test_client().get("/ok").headers["X-Stamp"] == "late"
    assert seen == ["late"]
    (server,) = servers(spans())
    assert (server["name"], server["status_code"]) == ("http:GET /ok", 200)
