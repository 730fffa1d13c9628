"""A worker whose app has no ``app.conf.infratrace`` finds its configuration as every
other process does: ``$INFRATRACE_CONFIG``, else ``./infratrace.toml``; with neither,
it says so on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from infratrace_celery._options import CeleryOptions, config_source

from tests.celery.conftest import BROKER, ROOT
from tests.servers import redis_up, wait_until

NO_CONFIGURATION = "infratrace: no configuration found"


class _App:
    """Just what config_source reads of a Celery app: ``conf.get``."""

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf


@pytest.fixture
def in_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.delenv("INFRATRACE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def test_a_local_infratrace_toml_is_the_workers_configuration(in_folder: Path) -> None:
    options = CeleryOptions()
    assert config_source(options, _App({})) == (False, None)
    (in_folder / "infratrace.toml").write_text('[trace]\ndriver = "default"\n')
    assert config_source(options, _App({})) == (True, None)
    # What the app or instrument() names still comes first, and configure_worker=False wins.
    assert config_source(options, _App({"infratrace": "app.toml"})) == (True, "app.toml")
    assert config_source(CeleryOptions(config="given.toml"), _App({})) == (True, "given.toml")
    assert config_source(CeleryOptions(configure_worker=False), _App({})) == (False, None)


def test_a_local_folder_named_infratrace_toml_is_not_a_configuration(in_folder: Path) -> None:
    (in_folder / "infratrace.toml").mkdir()
    assert config_source(CeleryOptions(), _App({})) == (False, None)


def test_infratrace_config_is_the_workers_configuration(in_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFRATRACE_CONFIG", "   ")
    assert config_source(CeleryOptions(), _App({})) == (False, None)
    monkeypatch.setenv("INFRATRACE_CONFIG", str(in_folder / "elsewhere.toml"))
    assert config_source(CeleryOptions(), _App({})) == (True, None)


def _run_worker(cwd: Path, log: Path) -> tuple[int, str]:
    """A prefork worker of tests/celery/worker_app.py started in ``cwd`` without
    ``$INFRATRACE_CONFIG``: runs one task sent from here, stops; returns the task's
    result and the worker's output."""
    queue = f"infratrace-discovery-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k != "INFRATRACE_CONFIG"}
    env.update(INFRATRACE_TEST_QUEUE=queue, CELERY_BROKER_URL=BROKER, PYTHONPATH=str(ROOT))
    argv = [sys.executable, "-m", "celery", "-A", "tests.celery.worker_app", "worker", "-P", "prefork", "-c", "1",
            "-Q", queue, "-n", f"{queue}@%h", "--without-mingle", "--without-gossip", "--without-heartbeat", "-l", "warning"]  # fmt: skip
    from tests.celery import worker_app

    with log.open("wb") as output:
        worker = subprocess.Popen(argv, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            result = worker_app.add.apply_async((2, 3), queue=queue).get(timeout=60)
        finally:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    return int(result), log.read_text(errors="replace")


@pytest.mark.slow
def test_a_worker_started_next_to_infratrace_toml_writes_where_it_says(tmp_path: Path) -> None:
    if not redis_up():
        pytest.fail("Redis must listen on 127.0.0.1:6379 for the Celery tests (.ci/run starts it)")
    spans_dir = tmp_path / "spans"
    spans_dir.mkdir()
    workdir = tmp_path / "worker"
    workdir.mkdir()
    (workdir / "infratrace.toml").write_text(
        f'[trace]\ndriver = "file"\njson = true\ntimeout = "50ms"\n[trace.setting]\noutput = "{spans_dir}/worker-{{pid}}.jsonl"\n'
    )
    result, output = _run_worker(workdir, tmp_path / "worker.log")
    assert result == 5
    assert NO_CONFIGURATION not in output

    def consumer_spans() -> list[dict[str, Any]]:
        spans = [json.loads(line) for path in spans_dir.glob("*.jsonl") for line in path.read_text().splitlines() if line]
        return [s for s in spans if s["name"] == "queue:tests.celery.worker_app.add" and s["kind"] == "consumer"]

    found = wait_until(consumer_spans, 20, "the worker's consumer span in the file ./infratrace.toml names")
    assert found[0]["resource"]["process.pid"] != os.getpid()


@pytest.mark.slow
def test_a_worker_with_no_configuration_says_so_on_stderr(tmp_path: Path) -> None:
    if not redis_up():
        pytest.fail("Redis must listen on 127.0.0.1:6379 for the Celery tests (.ci/run starts it)")
    workdir = tmp_path / "worker"
    workdir.mkdir()
    result, output = _run_worker(workdir, tmp_path / "worker.log")
    assert result == 5
    assert f"{NO_CONFIGURATION} ($INFRATRACE_CONFIG is unset and there is no ./infratrace.toml)" in output
    assert not list(workdir.iterdir())
