"""The pipeline contract: accounting, failures, slow destinations, overload, shutdown,
reconfigure, atexit and fork."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

import infratrace
from infratrace import register_driver


class Recording:
    """A driver that keeps what it is given (optionally failing or blocking)."""

    instances: ClassVar[list[Recording]] = []

    def __init__(self, config, *, fail: bool = False, gate: threading.Event | None = None) -> None:
        self.spans: list[str] = []
        self.fail = fail
        self.gate = gate
        self.closed = False
        Recording.instances.append(self)

    def write(self, spans) -> None:
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail:
            raise ConnectionError("destination is down")
        self.spans.extend(s.name for s in spans)

    def close(self) -> None:
        self.closed = True


def _account(conn: dict) -> int:
    return conn["written_count"] + conn["dropped_count"] + conn["sampled_out_count"] + conn["queue_len"]


def test_every_span_is_accounted_for_per_connection(tmp_path):
    register_driver("recording", Recording)
    infratrace.configure(
        f"""
[trace.ok]
driver = "recording"
buffer = 10000
[trace.half]
driver = "recording"
sample = 0.5
buffer = 10000
[trace.file]
driver = "file"
json = true
buffer = 10000
[trace.file.setting]
output = "{tmp_path / "f.jsonl"}"
"""
    )
    threads = [threading.Thread(target=lambda: [infratrace.trace("t") for _ in range(500)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert infratrace.force_flush(10)
    stats = infratrace.stats()
    assert stats["ended_count"] == stats["queued_count"] == 2000 and stats["queue_len"] == 0
    for name in ("ok", "half", "file"):
        assert _account(stats["connections"][name]) == 2000, name
    assert stats["connections"]["ok"]["written_count"] == 2000
    assert 0 < stats["connections"]["half"]["sampled_out_count"] < 2000
    assert len((tmp_path / "f.jsonl").read_text().splitlines()) == 2000
    assert stats["flush_span_count"] == stats["written_count"] and stats["flush_count"] >= 3
    infratrace.shutdown()


def test_failing_destination_is_counted_reported_once_and_never_raises(capfd):
    register_driver("down", lambda c: Recording(c, fail=True))
    register_driver("recording", Recording)
    infratrace.configure('[trace.down]\ndriver = "down"\n[trace.up]\ndriver = "recording"')
    for _ in range(3):
        for _ in range(10):
            infratrace.trace("x")
        infratrace.force_flush()
    stats = infratrace.stats()
    down = stats["connections"]["down"]
    assert down["write_error_count"] == 3
    assert down["dropped_count"] == 30 and _account(down) == 30
    assert "ConnectionError: destination is down" in down["last_error"]
    assert stats["connections"]["up"]["written_count"] == 30
    assert stats["write_error_count"] == 3
    err = capfd.readouterr().err
    assert err.count("infratrace: connection 'down'") == 1  # one report per burst
    infratrace.shutdown()


def test_a_blocked_destination_neither_blocks_the_app_nor_the_others():
    gate = threading.Event()
    register_driver("stuck", lambda c: Recording(c, gate=gate))
    register_driver("recording", Recording)
    Recording.instances.clear()
    infratrace.configure('[trace.stuck]\ndriver = "stuck"\nbuffer = 100\n[trace.up]\ndriver = "recording"\nbuffer = 100')
    start = time.monotonic()
    ended = 0
    for _ in range(20):  # an app doing some I/O between bursts of 50 spans
        for _ in range(50):
            infratrace.trace("x")
            ended += 1
        time.sleep(0.005)
    elapsed = time.monotonic() - start
    assert elapsed < 2.0
    up = next(r for r in Recording.instances if r.gate is None)
    deadline = time.monotonic() + 5
    while len(up.spans) < ended and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(up.spans) == ended
    stuck = infratrace.stats()["connections"]["stuck"]
    # A remote-style destination sheds load (sampling harder, then dropping): memory
    # stays bounded and the application never waits.
    assert stuck["overflow"] == "sample"
    assert stuck["dropped_full_count"] + stuck["sampled_out_count"] > 0
    assert stuck["queue_len"] <= stuck["queue_cap"]
    gate.set()
    assert infratrace.force_flush(10)
    stuck = infratrace.stats()["connections"]["stuck"]
    assert _account(stuck) == 1000
    infratrace.shutdown()


def _gated_pipeline(gate: threading.Event):
    register_driver("gated", lambda c: Recording(c, gate=gate))
    infratrace.configure('[trace]\ndriver = "gated"\nbuffer = 64\ntimeout = "1h"')
    pipeline = infratrace.get_hook().pipeline  # type: ignore[attr-defined]
    return pipeline


def test_a_full_backlog_of_a_local_destination_is_written_by_the_callers_thread(tmp_path):
    path = tmp_path / "sync.jsonl"
    infratrace.configure(
        f'[trace]\ndriver = "file"\njson = true\nbuffer = 64\ntimeout = "1h"\n[trace.setting]\noutput = "{path}"'
    )
    (runner,) = infratrace.get_hook().pipeline.runners  # type: ignore[attr-defined]
    runner._waking = True  # the connection's thread never gets to run: the app's thread must cope
    for i in range(1000):
        infratrace.trace(f"s{i}")
    conn = infratrace.stats()["connections"]["default"]
    assert conn["overflow"] == "sync" and conn["queue_cap"] == 256
    # Three times a full backlog and the span that found it full, written where they filled.
    assert conn["sync_fallback_count"] == 3 * 257
    assert conn["written_count"] == 3 * 257 and conn["queue_len"] == 1000 - 3 * 257
    assert conn["sampled_out_count"] == conn["dropped_count"] == 0  # nothing lost, nothing sampled out
    assert infratrace.force_flush(10)
    names = [json.loads(line)["name"] for line in path.read_text().splitlines()]
    assert names == [f"s{i}" for i in range(1000)]  # all of them, in order
    infratrace.shutdown()


def test_a_backlog_that_fills_sheds_load_by_trace_consistent_sampling():
    gate = threading.Event()
    _gated_pipeline(gate)
    for _ in range(640):
        infratrace.trace("x")
    conn = infratrace.stats()["connections"]["default"]
    assert conn["dynamic_sample_factor"] < 1.0
    assert conn["sampled_out_count"] > 0
    assert conn["queue_len"] <= conn["queue_cap"] == 256  # memory stays bounded
    gate.set()
    assert infratrace.force_flush(10)
    conn = infratrace.stats()["connections"]["default"]
    assert _account(conn) == 640
    infratrace.shutdown()


def test_shutdown_flushes_everything_and_later_spans_are_counted_as_dropped():
    register_driver("recording", Recording)
    Recording.instances.clear()
    infratrace.configure('[trace]\ndriver = "recording"\ntimeout = "1h"')
    for _ in range(300):
        infratrace.trace("x")
    assert infratrace.shutdown(10)
    (driver,) = Recording.instances
    assert len(driver.spans) == 300 and driver.closed
    infratrace.trace("late")
    assert infratrace.stats()["dropped_count"] == 1


def test_interpreter_exit_flushes_pending_spans(tmp_path):
    path = tmp_path / "exit.jsonl"
    code = f"""
import infratrace
infratrace.configure('[trace]\\ndriver = "file"\\njson = true\\ntimeout = "1h"\\n[trace.setting]\\noutput = "{path}"')
for i in range(250):
    infratrace.trace("bye")
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert len(path.read_text().splitlines()) == 250


def test_unconfigured_use_configures_from_the_environment(tmp_path):
    path = tmp_path / "env.jsonl"
    config = tmp_path / "c.toml"
    config.write_text(f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{path}"\n')
    code = "import infratrace\nwith infratrace.begin('auto'):\n    pass\n"
    env = {**os.environ, "INFRATRACE_CONFIG": str(config)}
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=env)
    assert json.loads(path.read_text())["name"] == "auto"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_gets_a_working_pipeline(tmp_path):
    path = tmp_path / "fork-{pid}.jsonl"
    infratrace.configure(f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{path}"')
    with infratrace.begin("parent-before-fork") as parent:
        pass
    infratrace.trace("queued-in-parent")  # still queued when we fork
    pid = os.fork()
    if pid == 0:  # child
        try:
            with infratrace.begin("in-child", parent=parent.context):
                infratrace.trace("child-event")
            ok = infratrace.force_flush(10)
            stats = infratrace.stats()
            os._exit(0 if ok and stats["connections"]["default"]["written_count"] == 2 else 3)
        except BaseException:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    infratrace.force_flush()
    parent_file = Path(str(path).replace("{pid}", str(os.getpid())))
    child_file = Path(str(path).replace("{pid}", str(pid)))
    parent_names = [json.loads(line)["name"] for line in parent_file.read_text().splitlines()]
    child_spans = [json.loads(line) for line in child_file.read_text().splitlines()]
    assert parent_names == ["parent-before-fork", "queued-in-parent"]
    assert {s["name"] for s in child_spans} == {"in-child", "child-event"}
    in_child = next(s for s in child_spans if s["name"] == "in-child")
    assert in_child["parent_span_id"] == parent.span_id
    assert in_child["resource"]["process.pid"] == pid
    infratrace.shutdown()


def test_multiprocessing_fork_children_write_their_spans(tmp_path):
    import multiprocessing

    path = tmp_path / "mp.jsonl"
    infratrace.configure(f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{path}"')
    infratrace.trace("warm-up")  # threads are running when we fork
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(3) as pool:
        pool.map(_child_job, range(30))
    infratrace.force_flush()
    names = [json.loads(line)["name"] for line in path.read_text().splitlines()]
    assert sorted(n for n in names if n.startswith("job")) == sorted(f"job{i}" for i in range(30))
    infratrace.shutdown()


def _child_job(i: int) -> None:
    infratrace.trace(f"job{i}")
    infratrace.force_flush(10)


def test_a_span_after_an_idle_spell_is_written_by_the_connection_thread_within_timeout(tmp_path):
    """After several timeouts with nothing queued, a new span is written by the
    connection's own thread (no flush) within a few timeouts; twice."""
    path = tmp_path / "idle.jsonl"
    infratrace.configure(f'[trace]\ndriver = "file"\njson = true\ntimeout = "50ms"\n[trace.setting]\noutput = "{path}"')
    for expected in (1, 2):
        time.sleep(0.3)  # several timeouts with nothing queued
        writes = infratrace.stats()["connections"]["default"]["flush_count"]
        infratrace.trace(f"s{expected}")
        deadline = time.monotonic() + 5
        # The line reaches the file just before the write is counted, so wait for both.
        while time.monotonic() < deadline and not (
            infratrace.stats()["connections"]["default"]["flush_count"] > writes
            and path.exists()
            and len(path.read_text().splitlines()) == expected
        ):
            time.sleep(0.01)
        assert len(path.read_text().splitlines()) == expected
        # One write, of this span: an empty backlog is never written.
        time.sleep(0.2)  # several more timeouts, in which nothing must be written
        assert infratrace.stats()["connections"]["default"]["flush_count"] == writes + 1
