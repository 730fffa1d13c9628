"""Every process flushes: multiprocessing children, Pool workers and Processes, under
fork and spawn, write every span they ended before they exit."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from pathlib import Path

import pytest

import infratrace
from tests.core.mp_tasks import SPANS_PER_TASK, traced_process, traced_task

METHODS = [m for m in ("fork", "spawn") if m in multiprocessing.get_all_start_methods()]


@pytest.fixture
def spans_dir(tmp_path, monkeypatch):
    config = tmp_path / "mp.toml"
    # A long timeout: nothing is written by the clock before the children exit.
    config.write_text(
        f'[trace]\ndriver = "file"\njson = true\ntimeout = "1h"\n[trace.setting]\noutput = "{tmp_path}/spans-{{pid}}.jsonl"\n'
    )
    monkeypatch.setenv("INFRATRACE_CONFIG", str(config))  # spawned children configure from it
    root = str(Path(__file__).resolve().parents[2])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    infratrace.configure(str(config))
    yield tmp_path
    infratrace.shutdown()


def _written(directory: Path) -> list[dict]:
    spans = []
    for path in directory.glob("spans-*.jsonl"):
        spans += [json.loads(line) for line in path.read_text().splitlines()]
    return spans


@pytest.mark.parametrize("method", METHODS)
def test_pool_workers_write_every_span(spans_dir: Path, method: str):
    context = multiprocessing.get_context(method)
    pool = context.Pool(4)
    try:
        assert sorted(pool.map(traced_task, range(40))) == list(range(40))
    finally:
        pool.close()
        pool.join()
    spans = _written(spans_dir)
    assert len(spans) == 40 * SPANS_PER_TASK
    assert os.getpid() not in {s["resource"]["process.pid"] for s in spans}


@pytest.mark.parametrize("method", METHODS)
def test_process_children_write_every_span(spans_dir: Path, method: str):
    context = multiprocessing.get_context(method)
    children = [context.Process(target=traced_process, args=(5,)) for _ in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    assert len(_written(spans_dir)) == 3 * 5 * SPANS_PER_TASK


@pytest.mark.skipif(sys.platform != "linux", reason="fork")
def test_a_fork_child_flushes_what_it_ended_before_os_exit_when_multiprocessing_forked_it(spans_dir: Path):
    context = multiprocessing.get_context("fork")
    child = context.Process(target=traced_task, args=(7,))
    child.start()
    child.join(60)
    spans = _written(spans_dir)
    assert len(spans) == SPANS_PER_TASK and spans[-1]["name"] == "task"
