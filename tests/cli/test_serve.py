"""``infratrace serve``: the JSON API, the page and its assets, live updates, on a real
server on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from infratrace.viewer import ViewerError
from infratrace.viewer.reading import Watch
from infratrace.viewer.web import ViewerServer

from ..servers import wait_until
from .browser import start_server, stop
from .conftest import run_module
from .recorded import CHECKOUT, FAIL, HEALTH, WEB_SPANS, Recording, driver, write


def get(port: int, path: str, host: str | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host or f"127.0.0.1:{port}"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def get_json(port: int, path: str) -> Any:
    status, headers, body = get(port, path)
    assert status == 200, body
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    return json.loads(body)


@contextmanager
def serving(watch: Watch) -> Iterator[ViewerServer]:
    server = ViewerServer(watch, 0, interval=0.05)
    server.start()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(10)


@pytest.fixture
def server(recording: Recording) -> Iterator[ViewerServer]:
    with serving(Watch([str(recording.web), str(recording.worker)], rotated=True)) as started:
        yield started


def test_the_trace_list(server: ViewerServer, recording: Recording) -> None:
    data = get_json(server.port, "/api/traces")
    assert data["spans"] == 10
    assert data["notes"] == []
    assert set(data["files"]) == {str(p) for p in [*recording.web_parts, recording.web, recording.worker]}
    summaries = [
        (t["trace_id"], t["name"], t["service"], t["services"], t["status"], t["errors"], t["spans"], t["duration_ms"], t["time"])
        for t in data["traces"]
    ]
    assert summaries == [
        (HEALTH, "http:GET /health", "shop-web", ["shop-web"], "ok", 0, 1, 2.0, "2027-01-15 08:00:02.000"),
        (FAIL, "http:GET /fail", "shop-web", ["shop-web"], "error", 2, 2, 8.0, "2027-01-15 08:00:01.000"),
        (
            CHECKOUT,
            "http:POST /checkout/{id}",
            "shop-web",
            ["shop-web", "shop-worker"],
            "ok",
            0,
            7,
            180.0,
            "2027-01-15 08:00:00.000",
        ),
    ]
    unchanged = get_json(server.port, f"/api/traces?known={data['generation']}")
    assert unchanged == {"generation": data["generation"], "unchanged": True}


@pytest.mark.parametrize(
    ("query", "expected", "matched"),
    [
        ("q=payments", [CHECKOUT], 1),
        ("q=PAYMENTS+shop-worker", [CHECKOUT], 1),  # every word, any case
        ("q=0af76519", [FAIL], 1),
        ("q=shop-web", [HEALTH, FAIL, CHECKOUT], 3),
        ("status=error", [FAIL], 1),
        ("status=ok&q=http", [HEALTH, CHECKOUT], 2),
        ("limit=1", [HEALTH], 3),  # the newest, and how many matched
        ("q=nothing", [], 0),
    ],
)
def test_the_list_is_searched_on_the_server(server: ViewerServer, query: str, expected: list[str], matched: int) -> None:
    data = get_json(server.port, f"/api/traces?{query}")
    assert [t["trace_id"] for t in data["traces"]] == expected
    assert (data["matched"], data["total"]) == (matched, 3)


def test_a_trace_s_spans_in_tree_order_with_their_times(server: ViewerServer) -> None:
    detail = get_json(server.port, f"/api/traces/{CHECKOUT}")
    assert detail["span_count"] == 7
    assert [
        (s["depth"], s["name"], s["kind"], s["service"], s["pid"], s["offset_ms"], s["width_ms"], s["self_ms"], s["slow"])
        for s in detail["spans"]
    ] == [
        (0, "http:POST /checkout/{id}", "server", "shop-web", 1111, 0.0, 120.0, 4.0, False),
        (1, "web:shop.views.checkout", "internal", "shop-web", 1111, 2.0, 116.0, 76.0, True),
        (2, "service:orders.place", "internal", "shop-web", 1111, 10.0, 30.0, 28.0, True),
        (3, "method:orders.checksum", "internal", "shop-web", 1111, 12.0, 2.0, 2.0, False),
        (2, "queue:shop.process_order", "producer", "shop-web", 1111, 50.0, 10.0, 10.0, False),
        (3, "queue:shop.process_order", "consumer", "shop-worker", 2222, 70.0, 110.0, 20.0, False),
        (4, "service:payments.charge", "internal", "shop-worker", 2222, 80.0, 90.0, 90.0, True),
    ]
    root = detail["spans"][0]
    assert (root["http_status"], root["status_code"], root["attributes"]["http.route"]) == (202, 202, "/checkout/{id}")
    assert root["resource"] == {
        "service.name": "shop-web",
        "project": "shop",
        "profile": "test",
        "node": "web-1",
        "process.pid": 1111,
    }
    failed = get_json(server.port, f"/api/traces/{FAIL}")["spans"][1]
    assert (failed["status"], failed["status_message"]) == ("error", "RuntimeError: payment backend unreachable")
    (event,) = failed["events"]
    assert (event["name"], event["offset_ms"], event["attributes"]["exception.type"]) == ("exception", 6.0, "RuntimeError")
    assert event["attributes"]["exception.stacktrace"].endswith("RuntimeError: payment backend unreachable\n")


def test_unknown_things_and_other_hosts(server: ViewerServer) -> None:
    status, _, body = get(server.port, "/api/traces/" + "0" * 32)
    assert (status, json.loads(body)) == (404, {"error": "no such trace"})
    assert get(server.port, "/static/../../etc/passwd")[0] == 404
    assert get(server.port, "/nothing")[0] == 404
    # A page elsewhere whose name was rebound to 127.0.0.1 sends its own name.
    assert get(server.port, "/api/traces", host="attacker.example")[0] == 403
    assert get(server.port, "/api/traces", host=f"attacker.example:{server.port}")[0] == 403
    assert get(server.port, "/api/traces", host=f"localhost:{server.port}")[0] == 200


def test_the_page_and_its_assets_come_from_the_package(server: ViewerServer) -> None:
    status, headers, page = get(server.port, "/")
    assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    references = re.findall(rb'(?:src|href)="([^"]*)"', page)
    assert references == [b"static/viewer.css", b"static/viewer.js"]
    for name, content_type in (("viewer.css", "text/css; charset=utf-8"), ("viewer.js", "text/javascript; charset=utf-8")):
        status, headers, body = get(server.port, f"/static/{name}")
        assert (status, headers["Content-Type"]) == (200, content_type)
        assert body == (resources.files("infratrace.viewer") / "static" / name).read_bytes()
    for asset in (resources.files("infratrace.viewer") / "static").iterdir():
        text = asset.read_text()
        assert not re.search(r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}""", text.replace("http://127.0.0.1:", "")), asset.name
        assert "@import" not in text and "@font-face" not in text


def test_new_spans_appear_as_the_file_grows_and_rotates(tmp_path: Path) -> None:
    live = tmp_path / "live.jsonl"
    live.touch()
    writer = driver(f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{live}"\nmaxline = 2\ncompress = true\n')
    try:
        with serving(Watch([str(live)])) as server:
            assert get_json(server.port, "/api/traces")["traces"] == []
            write(writer, WEB_SPANS[:5])  # CHECKOUT's web part, rotated twice on the way
            port = server.port

            def checkout() -> dict[str, Any] | None:
                status, _, body = get(port, f"/api/traces/{CHECKOUT}")
                detail = json.loads(body) if status == 200 else None
                return detail if detail and detail["span_count"] == 5 else None

            detail = wait_until(checkout, 20, "CHECKOUT's 5 spans")
            assert [s["name"] for s in detail["spans"]] == [
                "http:POST /checkout/{id}",
                "web:shop.views.checkout",
                "service:orders.place",
                "method:orders.checksum",
                "queue:shop.process_order",
            ]
            write(writer, WEB_SPANS[5:])

            def three() -> list[dict[str, Any]] | None:
                traces: list[dict[str, Any]] = get_json(port, "/api/traces")["traces"]
                return traces if len(traces) == 3 else None

            traces = wait_until(three, 20, "three traces")
            assert [t["trace_id"] for t in traces] == [HEALTH, FAIL, CHECKOUT]
            assert get_json(server.port, "/api/traces")["spans"] == 8  # each span once, though read again gzipped
    finally:
        writer.close()


def test_a_busy_port_is_a_one_line_error(server: ViewerServer, recording: Recording) -> None:
    with pytest.raises(ViewerError) as info:
        ViewerServer(Watch([str(recording.worker)]), server.port)
    assert (
        str(info.value)
        == f"127.0.0.1:{server.port}: cannot listen: Address already in use; pick another port with --port (0: any free one)"
    )


def test_the_command_serves_until_interrupted(recording: Recording) -> None:
    process, url = start_server([str(recording.directory)])
    try:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        assert [t["trace_id"] for t in get_json(port, "/api/traces")["traces"]] == [HEALTH, FAIL, CHECKOUT]
    finally:
        assert stop(process) == 0


def test_bad_input_stops_the_command_with_one_line(tmp_path: Path, server: ViewerServer, recording: Recording) -> None:
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b"\x7fELF\x02\x01\x01\x00")  # no newline at all
    for argv, message in (
        ([str(garbage)], f"{garbage}: not a JSON-lines span file: line 1 is not a JSON object: binary data"),
        ([str(tmp_path / "missing.jsonl")], f"{tmp_path / 'missing.jsonl'}: no such file or directory"),
        ([str(recording.worker), "--port", str(server.port)], f"127.0.0.1:{server.port}: cannot listen: Address already in use"),
        (["-"], "-: stdin cannot be followed; give file or directory names"),
    ):
        result = run_module("serve", *argv)
        assert result.returncode == 2, result
        assert result.stdout == b""
        assert result.stderr.decode().startswith(f"infratrace serve: {message}")
        assert result.stderr.count(b"\n") == 1
