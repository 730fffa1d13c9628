"""``infratrace tail``: traces printed as their local roots end, from files the file
driver writes and rotates while they are followed."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infratrace._spandata import SpanData
from infratrace.drivers.file import FileDriver
from infratrace.viewer.model import Trace, TraceFilter
from infratrace.viewer.reading import Watch
from infratrace.viewer.tail import Tailer

from .conftest import ROOT
from .recorded import CHECKOUT, FAIL, HEALTH, WEB_SPANS, WORKER_SPANS, driver, write

BY_NAME = {(s.trace_id, s.name, s.kind): s for s in WEB_SPANS + WORKER_SPANS}


def spans(trace: str, *names: str) -> list[SpanData]:
    found = []
    for name in names:
        kind = "internal"
        head, _, last = name.rpartition(" ")
        if last in ("server", "producer", "consumer"):
            name, kind = head, last
        found.append(BY_NAME[(trace, name, kind)])
    return found


class Files:
    """A web app's file (rotated every 2 lines, gzipped) and a worker's, written by the
    file driver."""

    def __init__(self, directory: Path) -> None:
        self.web = directory / "web.jsonl"
        self.worker = directory / "worker.jsonl"
        self.web.touch()
        self.worker.touch()
        self.web_driver: FileDriver = driver(
            f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{self.web}"\nmaxline = 2\ncompress = true\n'
        )
        self.worker_driver: FileDriver = driver(
            f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{self.worker}"\n'
        )

    def close(self) -> None:
        self.web_driver.close()
        self.worker_driver.close()


@pytest.fixture
def files(tmp_path: Path) -> Iterator[Files]:
    made = Files(tmp_path)
    yield made
    made.close()


class Printed:
    def __init__(self) -> None:
        self.traces: list[tuple[str, str, list[str]]] = []

    def __call__(self, trace: Trace, title: str) -> None:
        self.traces.append((trace.trace_id, title, [s.name for s in trace.walk()]))


CHECKOUT_WEB = [
    "http:POST /checkout/{id}",
    "web:shop.views.checkout",
    "service:orders.place",
    "method:orders.checksum",
    "queue:shop.process_order",
]


def test_a_trace_is_printed_when_its_local_root_ends_and_again_when_its_task_does(files: Files) -> None:
    printed = Printed()
    tailer = Tailer(Watch([str(files.web), str(files.worker)]), printed)
    assert tailer.start() == 0
    write(files.web_driver, spans(CHECKOUT, "method:orders.checksum", "service:orders.place"))
    assert tailer.step() == 0  # no local root yet
    # Three more lines: the file rotates (gzipped) in the middle, between two reads.
    write(
        files.web_driver,
        spans(CHECKOUT, "queue:shop.process_order producer", "web:shop.views.checkout", "http:POST /checkout/{id} server"),
    )
    assert files.web_driver.rotated_files(), "the web file rotated"
    assert tailer.step() == 1
    assert printed.traces == [(CHECKOUT, "", CHECKOUT_WEB)]
    write(files.worker_driver, spans(CHECKOUT, "service:payments.charge", "queue:shop.process_order consumer"))
    assert tailer.step() == 1
    assert printed.traces[1] == (
        CHECKOUT,
        "continued (+2 spans)",
        [*CHECKOUT_WEB, "queue:shop.process_order", "service:payments.charge"],
    )
    write(files.web_driver, spans(FAIL, "web:shop.views.fail", "http:GET /fail server"))
    write(files.web_driver, spans(HEALTH, "http:GET /health server"))
    assert tailer.step() == 2
    assert [(t, title) for t, title, _ in printed.traces[2:]] == [(FAIL, ""), (HEALTH, "")]
    assert tailer.step() == 0


def test_spans_without_a_local_root_are_printed_after_the_wait(files: Files) -> None:
    now = [100.0]
    printed = Printed()
    tailer = Tailer(Watch([str(files.worker)]), printed, wait=5.0, clock=lambda: now[0])
    tailer.start()
    write(files.worker_driver, spans(CHECKOUT, "service:payments.charge"))  # its consumer span never comes
    assert tailer.step() == 0
    now[0] += 4.9
    assert tailer.step() == 0
    now[0] += 0.2
    assert tailer.step() == 1
    assert printed.traces == [(CHECKOUT, "", ["service:payments.charge"])]


def test_filters_and_the_last_traces_at_start(files: Files) -> None:
    write(files.web_driver, WEB_SPANS)  # 8 lines, 2 a file: the live file holds the last two
    printed = Printed()
    tailer = Tailer(Watch([str(files.web), str(files.worker)]), printed, TraceFilter(status="ok"))
    assert tailer.start(last=5) == 1
    assert printed.traces == [(HEALTH, "", ["http:GET /health"])]  # FAIL is an error, CHECKOUT's parts are rotated away
    write(files.worker_driver, WORKER_SPANS)
    assert tailer.step() == 1
    assert printed.traces[1] == (CHECKOUT, "", ["queue:shop.process_order", "service:payments.charge"])
    everything = Printed()
    assert Tailer(Watch([str(files.web), str(files.worker)]), everything).start(last=2) == 2
    assert [t for t, _, _ in everything.traces] == [FAIL, HEALTH]  # the last two, in start order


def test_the_command_follows_files_across_rotations(files: Files) -> None:
    env = {**os.environ, "NO_COLOR": "1", "TZ": "UTC", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "infratrace",
            "tail",
            str(files.web),
            str(files.worker),
            "-n",
            "0",
            "--interval",
            "0.05",
            "--width",
            "110",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    stdout, stderr = process.stdout, process.stderr
    assert stdout is not None and stderr is not None

    def read() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()

    def until(text: str) -> list[str]:
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while not any(text in line for line in seen):
            try:
                seen.append(lines.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"tail never printed {text!r}; it printed {seen!r}") from None
        return seen

    try:
        assert "following" in stderr.readline()
        write(files.web_driver, [s for s in WEB_SPANS if s.trace_id == CHECKOUT])
        first = until("queue:shop.process_order producer")
        assert first[0] == f"trace {CHECKOUT}  2027-01-15 08:00:00.000  120.0 ms  5 spans\n"
        write(files.worker_driver, WORKER_SPANS)
        again = until("service:payments.charge")
        assert next(line for line in again if line.strip()) == (
            f"continued (+2 spans) trace {CHECKOUT}  2027-01-15 08:00:00.000  180.0 ms  7 spans\n"
        )
        assert len(files.web_driver.rotated_files()) == 2
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0


def test_a_file_without_spans_stops_tail_with_one_line(tmp_path: Path) -> None:
    from .conftest import run_module

    log = tmp_path / "app.log"
    log.write_text("INFO started\nINFO ready\n")
    result = run_module("tail", str(log))
    assert result.returncode == 2
    assert (
        result.stderr
        == f"infratrace tail: {log}: not a JSON-lines span file: line 1 is not a JSON object: 'INFO started'\n".encode()
    )
