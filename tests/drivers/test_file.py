"""driver = "file": every option, rotation with a controllable clock, and
several processes appending to one file without losing or splitting a line."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import infratrace
from infratrace import SpanData, load_config, register_driver
from infratrace.drivers.file import FileDriver, window_end, window_start
from tests.spans import span_data


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def make_driver(tmp_path: Path, clock: Clock | None = None, **setting) -> FileDriver:
    options = "".join(f"{k} = {json.dumps(v)}\n" for k, v in setting.items())
    config = load_config(f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\nstore = "{tmp_path}"\n{options}')
    return FileDriver(config.connections[0], clock=clock or time.time)


def spans(n: int, name: str = "s", pad: int = 0) -> list[SpanData]:
    return [span_data(f"{name}{i}", {"pad": "x" * pad} if pad else {}) for i in range(n)]


def lines_of(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:  # type: ignore[operator]
        return [json.loads(line) for line in handle]


def all_names(driver: FileDriver) -> list[str]:
    names = []
    for path in [*driver.rotated_files(), driver.path]:
        if path.exists():
            names += [record["name"] for record in lines_of(path)]
    return names


def test_store_and_output_aliases(tmp_path):
    for key in ("output", "file", "path"):
        driver = make_driver(tmp_path, **{key: f"{key}.jsonl"})
        driver.write(spans(2))
        driver.close()
        assert len((tmp_path / f"{key}.jsonl").read_text().splitlines()) == 2


def test_pid_and_name_placeholders(tmp_path):
    driver = make_driver(tmp_path, output="t-{name}-{pid}.log")
    assert driver.path.name == f"t-default-{os.getpid()}.log"


def test_maxsize_rotation_never_splits_a_line(tmp_path):
    driver = make_driver(tmp_path, output="t.jsonl", maxsize=2000)
    for _ in range(10):
        driver.write(spans(7, pad=100))
    rotated = driver.rotated_files()
    assert len(rotated) >= 10
    for path in [*rotated, driver.path]:
        assert path.stat().st_size <= 2000
        assert path.read_bytes().endswith(b"\n")
        lines_of(path)  # every line is whole JSON
    assert len(all_names(driver)) == 70


def test_a_line_larger_than_maxsize_gets_a_file_of_its_own(tmp_path):
    driver = make_driver(tmp_path, output="t.jsonl", maxsize=100)
    driver.write(spans(3, pad=500))
    assert len(all_names(driver)) == 3
    assert all(len(lines_of(p)) == 1 for p in driver.rotated_files())


def test_maxline_rotation(tmp_path):
    driver = make_driver(tmp_path, output="t.jsonl", maxline=10)
    driver.write(spans(25))
    driver.write(spans(3, "late"))
    counts = sorted(len(lines_of(p)) for p in [*driver.rotated_files(), driver.path])
    assert counts == [8, 10, 10]
    assert len(all_names(driver)) == 28


def test_maxline_counts_existing_lines_on_open(tmp_path):
    first = make_driver(tmp_path, output="t.jsonl", maxline=10)
    first.write(spans(6))
    first.close()
    second = make_driver(tmp_path, output="t.jsonl", maxline=10)
    second.write(spans(6))
    assert [len(lines_of(p)) for p in second.rotated_files()] == [10]
    assert len(lines_of(second.path)) == 2


@pytest.mark.parametrize("slice_", ["hour", "day", "month", "year"])
def test_time_slices_rotate_at_the_window_boundary_and_name_the_closed_window(tmp_path, slice_):
    start = time.time()
    clock = Clock(start)
    driver = make_driver(tmp_path, clock, output="t.jsonl", slice=slice_)
    driver.write(spans(3, "first"))
    clock.now = window_end(slice_, start) - 0.001
    driver.write(spans(1, "still"))
    assert driver.rotated_files() == []
    clock.now = window_end(slice_, start) + 1
    driver.write(spans(2, "next"))
    (rotated,) = driver.rotated_files()
    label = time.strftime(
        {"hour": "%Y-%m-%dT%H", "day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}[slice_], time.localtime(start)
    )
    assert rotated.name == f"t.{label}.jsonl"
    assert [r["name"] for r in lines_of(rotated)] == ["first0", "first1", "first2", "still0"]
    assert [r["name"] for r in lines_of(driver.path)] == ["next0", "next1"]


def test_window_math():
    when = time.mktime((2026, 12, 31, 23, 30, 0, 0, 0, -1))
    assert window_end("day", when) == time.mktime((2027, 1, 1, 0, 0, 0, 0, 0, -1))
    assert window_end("month", when) == time.mktime((2027, 1, 1, 0, 0, 0, 0, 0, -1))
    assert window_start("hour", when) == time.mktime((2026, 12, 31, 23, 0, 0, 0, 0, -1))


def test_compress_gzips_rotated_files(tmp_path):
    driver = make_driver(tmp_path, output="t.jsonl", maxline=5, compress=True)
    driver.write(spans(12))
    rotated = driver.rotated_files()
    assert len(rotated) == 2 and all(p.suffix == ".gz" for p in rotated)
    assert not list(tmp_path.glob("*.part"))
    assert len(all_names(driver)) == 12


def test_maxfiles_keeps_the_newest(tmp_path):
    driver = make_driver(tmp_path, output="t.jsonl", maxline=1, maxfiles=3)
    for i in range(8):
        driver.write(spans(1, f"b{i}-"))
        time.sleep(0.002)
    rotated = driver.rotated_files()
    assert len(rotated) == 3
    assert [lines_of(p)[0]["name"] for p in rotated] == ["b4-0", "b5-0", "b6-0"]


def test_maxage_deletes_old_rotated_files(tmp_path):
    clock = Clock(time.time())
    driver = make_driver(tmp_path, clock, output="t.jsonl", maxline=1, maxage="7d")
    driver.write(spans(3))
    old = driver.rotated_files()
    assert len(old) == 2
    for path in old:  # make them ten days old
        os.utime(path, (clock.now - 10 * 86400, clock.now - 10 * 86400))
    driver.write(spans(2, "new"))
    remaining = [lines_of(p)[0]["name"] for p in driver.rotated_files()]
    assert sorted(remaining) == ["new0", "s2"]  # s0 and s1 were ten days old


def test_rotated_name_collisions_get_a_counter(tmp_path):
    clock = Clock(1_800_000_000.0)
    driver = make_driver(tmp_path, clock, output="t.jsonl", maxline=1)
    driver.write(spans(4))
    assert len({p.name for p in driver.rotated_files()}) == 3


def test_text_format_lines(tmp_path):
    config = load_config(f'[trace]\ndriver = "file"\nformat = "%name% %status%"\n[trace.setting]\noutput = "{tmp_path}/t.log"')
    driver = FileDriver(config.connections[0])
    driver.write(spans(2))
    assert (tmp_path / "t.log").read_text() == "s0 ok\ns1 ok\n"


def test_unwritable_directory_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(infratrace.ConfigError) as info:
        infratrace.configure(f'[trace]\ndriver = "file"\n[trace.setting]\nstore = "{blocker}/sub"')
    assert info.value.key == "trace.setting.store"


WRITER = """
import sys, infratrace
path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
infratrace.configure(f'[trace]\\ndriver = "file"\\njson = true\\nbuffer = 100000\\ntimeout = "5ms"\\n'
                     f'[trace.setting]\\noutput = "{path}"\\nmaxsize = "64KB"\\n')
for i in range(n):
    infratrace.trace(f"{tag}-{i}", {"pad": "y" * (i % 300)})
infratrace.shutdown()
"""


def test_several_processes_share_one_rotating_file_without_losing_lines(tmp_path):
    path = tmp_path / "shared.jsonl"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"p{k}", "3000"]) for k in range(4)]
    for proc in procs:
        assert proc.wait(120) == 0
    files = [p for p in tmp_path.iterdir() if p.name.startswith("shared")]
    names: list[str] = []
    for f in files:
        data = f.read_bytes()
        assert data.endswith(b"\n") and f.stat().st_size <= 64 * 1024
        names += [json.loads(line)["name"] for line in data.splitlines()]
    assert len(names) == len(set(names)) == 12000
    assert len(files) > 5


def test_file_driver_through_the_pipeline_with_a_test_clock(tmp_path):
    clock = Clock(time.time())
    register_driver("clocked-file", lambda c: FileDriver(c, clock=clock))
    infratrace.configure(
        f'[trace]\ndriver = "clocked-file"\njson = true\n[trace.setting]\noutput = "{tmp_path}/c.jsonl"\nslice = "day"'
    )
    infratrace.trace("day1")
    infratrace.force_flush()
    clock.now += 86400
    infratrace.trace("day2")
    infratrace.force_flush()
    assert len(list(tmp_path.glob("c.*"))) == 2
    infratrace.shutdown()


def test_a_file_rotated_away_by_another_process_during_the_check_is_not_called_unwritable(tmp_path, monkeypatch):
    """Another process sharing the file renames it (rotation) between the check that it
    exists and the check that it is writable: configure() must not fail."""
    from infratrace.drivers import file as file_driver

    path = tmp_path / "shared.jsonl"
    path.write_text("")
    real_access = os.access
    rotated = []

    def access(target, mode):
        if Path(target) == path and not rotated:  # the other process rotates right now
            rotated.append(path.rename(tmp_path / "shared.1.jsonl"))
            return False
        return real_access(target, mode)

    monkeypatch.setattr(file_driver.os, "access", access)
    infratrace.configure(f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{path}"\n')
    infratrace.trace("after the rotation")
    infratrace.shutdown(5)
    assert rotated and json.loads(path.read_text())["name"] == "after the rotation"


def test_a_file_that_never_rotates_is_appended_without_a_lock_and_follows_an_outside_move(tmp_path):
    """No maxsize/maxline/slice: one O_APPEND write a batch, no lock file; a log rotator
    moving the file away is noticed at the next batch, whose lines go to a new file at
    the configured path."""
    driver = make_driver(tmp_path, output="plain.jsonl")
    driver.write(spans(2, "a"))
    assert not (tmp_path / ".plain.jsonl.lock").exists()
    moved = driver.path.rename(tmp_path / "plain.jsonl.1")
    driver.write(spans(1, "b"))
    assert [r["name"] for r in lines_of(moved)] == ["a0", "a1"]
    assert [r["name"] for r in lines_of(driver.path)] == ["b0"]
    driver.close()
