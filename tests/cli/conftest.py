"""The command line's tests: the recorded trace files, and ``main()`` run in-process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infratrace.cli import main

from .recorded import Recording, record

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture(autouse=True)
def _plain_utc_output(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No colours (the marks say the same), local time = UTC, the width given."""
    monkeypatch.setenv("NO_COLOR", "1")
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS", "LINES", "INFRATRACE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def recording(tmp_path: Path) -> Recording:
    return record(tmp_path / "traces")


Cli = Callable[..., Result]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """``cli("view", ...)``: ``main()`` in this process, its exit status and output."""

    def run(*argv: str | Path) -> Result:
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def run_module(*argv: str | Path, stdin: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """``python -m infratrace ...`` in a new process."""
    env = {**os.environ, "NO_COLOR": "1", "TZ": "UTC", "PYTHONPATH": str(ROOT)}
    env.pop("FORCE_COLOR", None)
    env.pop("INFRATRACE_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "infratrace", *map(str, argv)],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=60,
    )


def table_rows(out: str, trace_id: str) -> list[dict[str, str]]:
    """The span rows printed for ``trace_id`` (without ``--details``): mark, name
    (with its tree guides), service, pid, duration and bar, cut at the columns the
    title row gives."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"trace {trace_id}"))
    titles = lines[start + 1]
    service, pid_end = titles.index("service"), titles.index("pid") + len("pid")
    duration_end, timeline = titles.index("duration") + len("duration"), titles.index("timeline")
    rows = []
    for line in lines[start + 2 :]:
        if not line.strip() or line.startswith("trace "):
            break
        rows.append(
            {
                "mark": line[0].strip(),
                "name": line[2:service].rstrip(),
                "service": line[service:pid_end].split()[0],
                "pid": line[service:pid_end].split()[-1],
                "duration": line[pid_end:duration_end].strip(),
                "bar": line[timeline:],
            }
        )
    return rows


def bar(cells: str) -> tuple[int, int]:
    """``(first cell, cells)`` of a printed bar."""
    first = cells.index("█")
    return first, len(cells.rstrip()) - first
