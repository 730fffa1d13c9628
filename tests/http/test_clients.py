"""Each client library (httpx sync and async, requests, urllib3, urllib.request) against
a real server on 127.0.0.1: the ``client:`` span (name, kind, parent, attributes,
status), the ``traceparent`` the server receives, errors, exclusions, hooks, routes,
streaming, and ``uninstrument()``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest

import infratrace
from infratrace import baggage

from .conftest import Client, Peer, instrumentation, unused_port_url


def client_spans(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [span for span in spans if span["name"].startswith("client:")]


def traceparent(span: dict[str, Any], flags: str = "01") -> str:
    return f"00-{span['trace_id']}-{span['span_id']}-{flags}"


def test_span_and_propagated_traceparent(client: Client, instrument: Callable[..., None], peer: Peer, span_file: Any) -> None:
    out = span_file()
    instrument()
    with infratrace.begin("service:order.sync"):
        status = client.send("GET", f"{peer.base}/users/7?access_token=s3cret&page=2#top")
    assert status == 200
    spans = out.spans()
    (span,) = client_spans(spans)
    (parent,) = [s for s in spans if s["name"] == "service:order.sync"]
    assert span["name"] == f"client:GET 127.0.0.1:{peer.port}"
    assert span["kind"] == "client"
    assert (span["trace_id"], span["parent_span_id"]) == (parent["trace_id"], parent["span_id"])
    assert (span["status"], span["status_code"]) == ("ok", 200)
    assert span["attributes"] == {
        "server.address": "127.0.0.1",
        "server.port": peer.port,
        "url.scheme": "http",
        "http.request.method": "GET",
        "url.full": f"http://127.0.0.1:{peer.port}/users/7?access_token=[REDACTED]&page=2",
        "http.response.status_code": 200,
        "network.protocol.version": "1.1",
    }
    assert peer.last.path == "/users/7?access_token=s3cret&page=2", "the request itself is sent unchanged"
    assert peer.last.header("traceparent") == traceparent(span)


@pytest.mark.parametrize("status", [404, 500])
def test_error_statuses_make_error_spans(
    client: Client, instrument: Callable[..., None], peer: Peer, span_file: Any, status: int
) -> None:
    out = span_file()
    instrument()
    with infratrace.begin("service:x"):
        assert client.send("POST", f"{peer.base}/status/{status}") == status
    (span,) = client_spans(out.spans())
    assert span["name"] == f"client:POST 127.0.0.1:{peer.port}"
    assert (span["status"], span["status_code"]) == ("error", status)
    assert span["attributes"]["http.response.status_code"] == status
    assert span["attributes"]["error.type"] == str(status)
    assert peer.last.header("traceparent") == traceparent(span)


def _raised(call: Callable[[], Any]) -> BaseException:
    try:
        call()
    except Exception as exc:
        return exc
    raise AssertionError("the request did not raise")


def test_connection_refused_is_an_error_span_and_the_error_reaches_the_caller(
    client: Client, instrument: Callable[..., None], span_file: Any
) -> None:
    out = span_file()
    url = unused_port_url()
    untraced = _raised(lambda: client.send("GET", url))
    instrument()
    with infratrace.begin("service:x"):
        traced = _raised(lambda: client.send("GET", url))
    assert type(traced) is type(untraced)
    (span,) = client_spans(out.spans())
    assert span["status"] == "error"
    assert span["attributes"]["error.type"] == type(traced).__qualname__
    assert "http.response.status_code" not in span["attributes"]
    (event,) = span["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"].endswith(type(traced).__qualname__)


def test_an_unsampled_trace_sends_flags_00(client: Client, instrument: Callable[..., None], peer: Peer, span_file: Any) -> None:
    out = span_file("[trace.sample]\nrate = 0\n")
    seen: list[infratrace.Span] = []
    instrument(request_hook=lambda span, request: seen.append(span))
    with infratrace.begin("service:x") as parent:
        client.send("GET", f"{peer.base}/ok")
    (span,) = seen
    assert span.parent_span_id == parent.span_id
    assert peer.last.header("traceparent") == f"00-{parent.trace_id}-{span.span_id}-00"
    assert out.spans() == []


def test_an_incoming_trace_s_decision_travels_on(
    client: Client, instrument: Callable[..., None], peer: Peer, span_file: Any
) -> None:
    span_file()
    instrument()
    for flags in ("00", "01"):
        remote = infratrace.parse_traceparent(f"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flags}")
        with infratrace.begin("http:GET /x", parent=remote):
            client.send("GET", f"{peer.base}/ok")
        sent = peer.last.header("traceparent")
        assert sent is not None and sent.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-") and sent.endswith(f"-{flags}")


def test_the_client_span_replaces_a_traceparent_the_caller_set(
    client: Client, instrument: Callable[..., None], peer: Peer, span_file: Any
) -> None:
    out = span_file()
    instrument()
    stale = "00-11111111111111111111111111111111-2222222222222222-01"
    with infratrace.begin("service:x"):
        client.send("GET", f"{peer.base}/ok", headers={"TraceParent": stale, "X-Keep": "1"})
    (span,) = client_spans(out.spans())
    assert peer.last.header("traceparent") == traceparent(span), "one traceparent, ours"
    assert peer.last.header("x-keep") == "1"


def test_baggage_of_the_context_is_sent(client: Client, instrument: Callable[..., None], peer: Peer, span_file: Any) -> None:
    span_file()
    instrument()
    with infratrace.begin("service:x"), baggage.scope({"tenant": "acme"}):
        client.send("GET", f"{peer.base}/ok")
    assert peer.last.header("baggage") == "tenant=acme"


def test_no_current_span_no_span_and_nothing_sent(
    client: Client, instrument: Callable[..., None], peer: Peer, span_file: Any
) -> None:
    out = span_file()
    instrument()
    assert client.send("GET", f"{peer.base}/ok") == 200
    assert peer.last.header("traceparent") is None
    assert out.spans() == []


def test_root_spans_on_makes_a_root_client_span(
    client: Client, instrument: Callable[..., None], peer: Peer, span_file: Any
) -> None:
    out = span_file()
    instrument(root_spans=True)
    client.send("GET", f"{peer.base}/ok")
    (span,) = out.spans()
    assert span["name"] == f"client:GET 127.0.0.1:{peer.port}" and span["parent_span_id"] == ""
    assert peer.last.header("traceparent") == traceparent(span)


@pytest.mark.parametrize("pattern", ["127.0.0.1", "127.0.0.*", "127.0.0.1:{port}", "*:{port}", "localhost", "127.*"])
def test_excluded_hosts(client: Client, instrument: Callable[..., None], peer: Peer, span_file: Any, pattern: str) -> None:
    out = span_file()
    instrument(excluded_hosts=["api.example.com", pattern.format(port=peer.port)], root_spans=True)
    with infratrace.begin("service:x"):
        client.send("GET", f"{peer.base}/ok")
    excluded = pattern != "localhost"  # the URL says 127.0.0.1: names are not resolved
    assert (client_spans(out.spans()) == []) is excluded
    assert (peer.last.header("traceparent") is None) is excluded


def test_propagate_off_makes_the_span_and_sends_nothing(
    client: Client, instrument: Callable[..., None], peer: Peer, span_file: Any
) -> None:
    out = span_file()
    instrument(propagate=False)
    with infratrace.begin("service:x"), baggage.scope({"tenant": "acme"}):
        client.send("GET", f"{peer.base}/ok")
    assert len(client_spans(out.spans())) == 1
    assert peer.last.header("traceparent") is None and peer.last.header("baggage") is None


def test_route_names_the_span(client: Client, instrument: Callable[..., None], peer: Peer, span_file: Any) -> None:
    import infratrace_http

    out = span_file()
    instrument()
    with infratrace.begin("service:x"), infratrace_http.route("/users/{id}"):
        client.send("DELETE", f"{peer.base}/users/7")
    (span,) = client_spans(out.spans())
    assert span["name"] == f"client:DELETE 127.0.0.1:{peer.port} /users/{{id}}"
    assert span["attributes"]["url.template"] == "/users/{id}"


def test_unknown_method_is_other(client: Client, instrument: Callable[..., None], peer: Peer, span_file: Any) -> None:
    out = span_file()
    instrument()
    with infratrace.begin("service:x"):
        assert client.send("PURGE", f"{peer.base}/cache") == 200
    (span,) = client_spans(out.spans())
    assert span["name"] == f"client:_OTHER 127.0.0.1:{peer.port}"
    assert span["attributes"]["http.request.method"] == "_OTHER"
    assert span["attributes"]["http.request.method_original"] == "PURGE"


def test_hooks_see_the_span_request_and_response(
    client: Client, instrument: Callable[..., None], peer: Peer, span_file: Any
) -> None:
    out = span_file()
    calls: list[tuple[str, Any, Any]] = []

    def on_request(span: Any, request: Any) -> None:
        calls.append(("request", span, request))
        span.set_attribute("app.request", True)

    def on_response(span: Any, request: Any, response: Any) -> None:
        calls.append(("response", request, response))
        span.set_attribute("app.response", True)

    instrument(request_hook=on_request, response_hook=on_response)
    with infratrace.begin("service:x"):
        client.send("GET", f"{peer.base}/ok")
    (span,) = client_spans(out.spans())
    assert span["attributes"]["app.request"] is True and span["attributes"]["app.response"] is True
    assert [call[0] for call in calls] == ["request", "response"]
    assert calls[0][2] is calls[1][1], "both hooks get the same request object"
    assert calls[1][2] is not None


def test_broken_hooks_do_not_break_the_request(
    client: Client, instrument: Callable[..., None], peer: Peer, span_file: Any
) -> None:
    out = span_file()

    def broken(*args: Any) -> None:
        raise RuntimeError("hook bug")

    instrument(request_hook=broken, response_hook=broken)
    with infratrace.begin("service:x"):
        assert client.send("GET", f"{peer.base}/ok") == 200
    (span,) = client_spans(out.spans())
    assert span["status"] == "ok"
    assert span["attributes"]["infratrace.hook_error"] == "response_hook: RuntimeError: hook bug"
    assert peer.last.header("traceparent") == traceparent(span)


def test_a_failing_tracer_never_reaches_the_caller(client: Client, instrument: Callable[..., None], peer: Peer) -> None:
    """A replacement tracer whose spans raise from every method: the request goes out
    and comes back as without tracing."""

    class BrokenSpan:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError(f"span bug: {name}")

    class BrokenTracer(infratrace.Tracer):
        def begin(self, *args: Any, **kwargs: Any) -> Any:
            return BrokenSpan()

    instrument(root_spans=True, request_hook=lambda span, request: span.set_attribute("x", 1))
    infratrace.set_hook(BrokenTracer())
    assert client.send("GET", f"{peer.base}/ok") == 200
    assert client.send("GET", f"{peer.base}/status/503") == 503
    assert [received.path for received in peer.received] == ["/ok", "/status/503"]
    assert peer.last.header("traceparent") is None


def test_streamed_response_span_ends_at_the_headers(
    client: Client, instrument: Callable[..., None], peer: Peer, span_file: Any
) -> None:
    out = span_file()
    seen: list[Any] = []
    instrument(request_hook=lambda span, request: seen.append(span))
    with infratrace.begin("service:x"):
        read, close = client.stream(f"{peer.base}/stream")
        try:
            (span,) = seen
            assert span.ended, "ended before the body arrived (the server holds it back)"
            peer.release.set()
            assert read() == b"body"
        finally:
            close()
    (written,) = client_spans(out.spans())
    assert written["status_code"] == 200


def test_uninstrument_restores_the_library(client: Client, instrument: Callable[..., None], peer: Peer, span_file: Any) -> None:
    out = span_file()
    instrument()
    instrument()  # again: the options replaced, nothing wrapped twice
    with infratrace.begin("service:x"):
        client.send("GET", f"{peer.base}/ok")
    assert len(client_spans(out.spans())) == 1
    for name in client.modules:
        instrumentation(name).uninstrument()
        instrumentation(name).uninstrument()  # harmless
    with infratrace.begin("service:x"):
        client.send("GET", f"{peer.base}/ok")
    assert len(client_spans(out.spans())) == 1
    assert peer.last.header("traceparent") is None


def test_redirects(client: Client, instrument: Callable[..., None], peer: Peer, span_file: Any) -> None:
    """requests follows redirects inside one ``Session.send``: one span with the final
    status; the others send each hop by itself: one span per hop, siblings."""
    out = span_file()
    instrument()
    with infratrace.begin("service:x") as parent:
        assert client.send("GET", f"{peer.base}/redirect") == 200
    spans = client_spans(out.spans())
    first, second = peer.received[-2:]
    assert (first.path, second.path) == ("/redirect", "/status/200")
    assert all(span["parent_span_id"] == parent.span_id for span in spans)
    if client.name == "requests":
        (span,) = spans
        assert span["status_code"] == 200 and span["attributes"]["url.full"].endswith("/redirect")
        assert first.header("traceparent") == second.header("traceparent") == traceparent(span)
    else:
        assert [span["status_code"] for span in spans] == [302, 200]
        assert [first.header("traceparent"), second.header("traceparent")] == [traceparent(span) for span in spans]


def test_instrumenting_imports_nothing_and_patches_nothing_at_import() -> None:
    import subprocess

    code = (
        "import sys, infratrace_http, infratrace_http.httpx, infratrace_http.requests, infratrace_http.urllib3, "
        "infratrace_http.urllib\n"
        "assert not {'httpx', 'requests', 'urllib3'} & set(sys.modules), sorted({'httpx', 'requests', 'urllib3'} & set(sys.modules))\n"
        "import requests, urllib.request\n"
        "assert requests.Session.send.__module__ == 'requests.sessions'\n"
        "assert urllib.request.AbstractHTTPHandler.do_open.__module__ == 'urllib.request'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_client_spans_count_against_the_request_s_span_budget(
    client: Client, instrument: Callable[..., None], peer: Peer, span_file: Any
) -> None:
    """Over budget the request is still sent, in the same trace, with no span written."""
    out = span_file()
    instrument()
    with infratrace.begin("http:GET /orders") as server:
        budget = infratrace.SpanBudget(2).activate()
        try:
            for _ in range(3):
                client.send("GET", f"{peer.base}/ok")
        finally:
            budget.deactivate()
    assert budget.dropped == 1
    spans = client_spans(out.spans())
    assert len(spans) == 2
    sent = [received.header("traceparent") for received in peer.received]
    assert sent[:2] == [traceparent(span) for span in spans]
    assert sent[2] is not None and sent[2].startswith(f"00-{server.trace_id}-")
    assert sent[2] not in sent[:2]
