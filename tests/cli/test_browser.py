"""``infratrace serve`` in a real headless browser (Debian's chromium, through the
Chrome DevTools protocol): the page loads, a search narrows the list, a trace opens,
and the span names and bar widths it draws are those of the files; zoom, span
details, live updates; nothing fetched from anywhere but the server."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .browser import Browser, find_chromium, start_server, stop
from .recorded import CHECKOUT, FAIL, WORKER, Recording, _span, driver, write

pytestmark = pytest.mark.slow

ROWS = """[...document.querySelectorAll('#rows .span-row')].map(row => {
  const bar = row.querySelector('.bar'), line = row.querySelector('.timeline');
  const b = bar ? bar.getBoundingClientRect() : null, t = line.getBoundingClientRect();
  return {id: row.dataset.spanId, name: row.querySelector('.span-name').textContent,
          left: b ? b.left - t.left : null, width: b ? b.width : null, timeline: t.width};
})"""

STATUS = (
    "(() => {{ const s = document.getElementById('status-filter'); s.value = '{}'; s.dispatchEvent(new Event('change')); }})()"
)


@pytest.fixture(scope="module")
def chromium() -> str:
    executable, why = find_chromium()
    if executable is None:
        pytest.skip(f"no browser for the browser test: {why}")
    return executable


@pytest.fixture
def browser(chromium: str) -> Iterator[Browser]:
    opened = Browser(chromium, width=1400, height=860)
    yield opened
    opened.close()


def spans_in_files(*paths: Path) -> dict[str, dict[str, Any]]:
    """The spans of the files, read with nothing but json and gzip."""
    found = {}
    for path in paths:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        for line in data.splitlines():
            record = json.loads(line)
            found[record["span_id"]] = record
    return found


def test_the_page_shows_the_files_traces(recording: Recording, browser: Browser) -> None:
    process, url = start_server([str(recording.directory)])
    try:
        browser.navigate(url)
        browser.wait_for("document.querySelectorAll('#traces .trace-item').length === 3", "three traces")

        # Search: only the trace with a span named service:payments.charge is left.
        browser.click("#search")
        browser.type("payments")
        browser.wait_for("document.querySelectorAll('#traces .trace-item').length === 1", "one trace left")
        assert browser.evaluate("document.querySelector('#traces .trace-item').dataset.traceId") == CHECKOUT
        assert browser.evaluate("document.getElementById('count').textContent") == "1 of 3 traces"

        # Open it: its rows are the files' spans, in tree order, with bars to scale.
        browser.click("#traces .trace-item")
        browser.wait_for("document.querySelectorAll('#rows .span-row').length === 7", "the trace's 7 spans")
        rows = browser.evaluate(ROWS)
        spans = spans_in_files(*recording.web_parts, recording.web, recording.worker)
        checkout = [s for s in spans.values() if s["trace_id"] == CHECKOUT]
        origin = min(s["start_time_unix_nano"] for s in checkout)
        extent = max(s["end_time_unix_nano"] for s in checkout) - origin
        assert [r["name"] for r in rows] == [
            "http:POST /checkout/{id}",
            "web:shop.views.checkout",
            "service:orders.place",
            "method:orders.checksum",
            "queue:shop.process_order",
            "queue:shop.process_order",
            "service:payments.charge",
        ]
        for row in rows:
            span = spans[row["id"]]
            assert row["name"] == span["name"]
            width = row["timeline"]
            expected_left = (span["start_time_unix_nano"] - origin) / extent * width
            expected_width = (span["end_time_unix_nano"] - span["start_time_unix_nano"]) / extent * width
            assert row["left"] == pytest.approx(expected_left, abs=1.5), row
            assert row["width"] == pytest.approx(expected_width, abs=1.5), row
        assert browser.evaluate("location.hash") == f"#trace={CHECKOUT}"

        # Zoom: drag across the middle half of the time line (45 → 135 ms of 180).
        axis = browser.evaluate(
            "(() => { const r = document.getElementById('axis').getBoundingClientRect(); return [r.left, r.width, r.top + r.height / 2]; })()"
        )
        left, width, y = axis
        for kind, x in (
            ("mousePressed", left + width * 0.25),
            ("mouseMoved", left + width * 0.5),
            ("mouseReleased", left + width * 0.75),
        ):
            browser.call(
                "Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "buttons": 1, "clickCount": 1}
            )
        browser.wait_for("document.getElementById('zoom-range').textContent !== ''", "a zoomed range")
        shown = browser.evaluate("document.getElementById('zoom-range').textContent")
        match = re.fullmatch(r"\+([\d.]+) ms … \+([\d.]+) ms of 180\.0 ms", shown)
        assert match, shown
        start, end = float(match.group(1)), float(match.group(2))
        assert start == pytest.approx(45, abs=0.5)  # to the pixel
        assert end == pytest.approx(135, abs=0.5)
        zoomed = {r["id"]: r for r in browser.evaluate(ROWS)}
        consumer = zoomed["a600000000000006"]  # 70 → 180 ms: from about 25/90 of the line, cut at its end
        assert consumer["left"] == pytest.approx(consumer["timeline"] * (70 - start) / (end - start), abs=1.5)
        assert consumer["left"] + consumer["width"] == pytest.approx(consumer["timeline"], abs=1.5)
        assert zoomed["a400000000000004"]["width"] is None  # 12 → 14 ms: out of view
        browser.click("#zoom-reset")
        browser.wait_for("document.getElementById('zoom-range').textContent === ''", "the whole trace again")

        # Details of a span: attributes, resource, where it was read.
        browser.click('#rows .span-row[data-span-id="a600000000000006"]')
        browser.wait_for("!document.getElementById('details').hidden", "the details pane")
        details = browser.evaluate("document.getElementById('details').innerText")
        assert "queue:shop.process_order" in details
        assert "celery.task_name\tshop.process_order" in details
        assert "process.pid\t2222" in details
        assert f"{recording.worker}:2" in details

        # The error trace: found by its status, its exception's stack trace shown.
        browser.click("#search")
        browser.evaluate(
            "document.getElementById('search').value = ''; document.getElementById('search').dispatchEvent(new Event('input'))"
        )
        browser.evaluate(STATUS.format("error"))
        browser.wait_for(
            f"[...document.querySelectorAll('#traces .trace-item')].map(i => i.dataset.traceId).join() === '{FAIL}'",
            "the one error trace",
        )
        browser.click("#traces .trace-item")
        browser.wait_for(
            f"location.hash === '#trace={FAIL}' && document.querySelectorAll('#rows .span-row.error').length === 2",
            "its two error spans",
        )
        browser.click('#rows .span-row[data-span-id="b200000000000002"]')
        stack = browser.wait_for("(document.querySelector('#details pre') || {}).textContent", "a stack trace")
        assert stack.endswith("RuntimeError: payment backend unreachable\n")

        # Live: a trace written now shows up without a reload.
        browser.evaluate(STATUS.format(""))
        writer = driver(f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{recording.worker}"\n')
        try:
            write(writer, [_span("queue:shop.send_receipt", "consumer", "7" * 32, "7" * 16, "", 0, 30, WORKER)])
        finally:
            writer.close()
        browser.wait_for(
            "[...document.querySelectorAll('#traces .trace-item .name')].some(n => n.textContent === 'queue:shop.send_receipt')",
            "the new trace",
        )
        assert browser.evaluate("document.getElementById('count').textContent") == "4 of 4 traces"

        # Offline: every request went to the server.
        assert browser.requests and all(r.startswith(url) for r in browser.requests), browser.requests
        assert browser.console == []
    finally:
        assert stop(process) == 0


def test_the_exported_page_works_from_a_file(recording: Recording, browser: Browser, tmp_path: Path) -> None:
    from .conftest import run_module

    page = tmp_path / "traces.html"
    result = run_module("view", str(recording.directory), "--html", str(page))
    assert result.returncode == 0, result.stderr
    browser.navigate(page.as_uri() + f"#trace={CHECKOUT}")
    browser.wait_for("document.querySelectorAll('#rows .span-row').length === 7", "the trace's 7 spans")
    assert browser.evaluate("document.querySelectorAll('#traces .trace-item').length") == 3
    assert all(r.startswith("file://") for r in browser.requests), browser.requests
    assert browser.console == []
