"""Configuration that every write would fail on fails at configure(), with the key, the
value and what is allowed: non-finite or huge durations, a directory or an unwritable
file as output, NUL/CR/LF in paths, header names and values."""

from __future__ import annotations

import os
import stat

import pytest

import infratrace
from infratrace import ConfigError, load_config


@pytest.fixture(autouse=True)
def _shutdown():
    yield
    infratrace.shutdown()


@pytest.mark.parametrize("value", ['"inf"', "inf", "nan", '"nan"', '"100000000d"', "1e300", '"367d"'])
@pytest.mark.parametrize(
    ("template", "key"),
    [
        ("[trace]\ntimeout = {v}\n", "trace.timeout"),
        ("[trace]\n[trace.sample]\nslow = {v}\n", "trace.sample.slow"),
        ('[trace]\ndriver = "otlp"\n[trace.setting]\ntimeout = {v}\n', "trace.setting.timeout"),
        ('[trace]\ndriver = "file"\n[trace.setting]\nmaxage = {v}\n', "trace.setting.maxage"),
    ],
)
def test_durations_are_finite_and_bounded(template: str, key: str, value: str):
    with pytest.raises(ConfigError) as info:
        load_config(template.format(v=value))
    assert info.value.key == key
    assert "at most 366 days" in str(info.value)


def test_a_year_is_still_a_duration():
    assert load_config('[trace]\ntimeout = "366d"').connections[0].timeout == 366 * 86400


def test_an_output_that_is_a_directory_fails_configure(tmp_path):
    config = f'[trace]\ndriver = "file"\n[trace.setting]\noutput = "{tmp_path}"'
    load_config(config)  # the file alone is fine: checking it touches no file system
    with pytest.raises(ConfigError) as info:
        infratrace.configure(config)
    assert info.value.key == "trace.setting.output" and "is a directory" in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_output_fails_configure(tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    with pytest.raises(ConfigError) as info:
        infratrace.configure(f'[trace]\ndriver = "file"\n[trace.setting]\noutput = "{locked}/t.jsonl"')
    assert "not writable" in str(info.value)


@pytest.mark.parametrize("bad", ["a\0b.jsonl", "a\nb.jsonl", "a\rb.jsonl"])
@pytest.mark.parametrize("key", ["output", "store"])
def test_paths_with_nul_cr_or_lf_are_refused(key: str, bad: str):
    with pytest.raises(ConfigError) as info:
        load_config({"trace": {"driver": "file", "setting": {key: bad}}})
    assert info.value.key == f"trace.setting.{key}" and "NUL, CR or LF" in str(info.value)


@pytest.mark.parametrize("rotation", ["", 'maxsize = "1MB"'], ids=["never rotates", "rotates"])
def test_trace_files_and_lock_files_are_created_0640(tmp_path, rotation):
    old = os.umask(0o022)
    try:
        path = tmp_path / "t.jsonl"
        infratrace.configure(f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{path}"\n{rotation}')
        infratrace.trace("x")
        assert infratrace.force_flush(10)
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        lock = tmp_path / ".t.jsonl.lock"
        if rotation:
            assert stat.S_IMODE(lock.stat().st_mode) == 0o640
        else:
            assert not lock.exists()  # a file that never rotates needs no lock
    finally:
        os.umask(old)


def test_rotated_and_gzipped_files_are_0640_too(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "r.jsonl"
        infratrace.configure(
            f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{path}"\nmaxline = 1\ncompress = true'
        )
        for i in range(3):
            infratrace.trace(f"s{i}")
            assert infratrace.force_flush(10)
        rotated = sorted(tmp_path.glob("r*.gz"))
        assert rotated, list(tmp_path.iterdir())
        assert {stat.S_IMODE(p.stat().st_mode) for p in [path, *rotated]} == {0o640}
    finally:
        os.umask(old)


def test_text_lines_escape_every_control_character(capsys):
    infratrace.configure('[trace]\ndriver = "default"\nformat = "%name% %attrs.v%"')
    hostile = "a\nb\rc\x1b[2J\x1b[31mred\x00\x0b\x7f\x9b\u2028\u2029end\tok"
    infratrace.trace(hostile, {"v": hostile})
    assert infratrace.force_flush(10)
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # one span, one line
    for raw in ("\r", "\x1b", "\x00", "\x0b", "\x7f", "\x9b", "\u2028", "\u2029"):
        assert raw not in out
    escaped = "a\\nb\\rc\\x1b[2J\\x1b[31mred\\x00\\x0b\\x7f\\x9b\\u2028\\u2029end\tok"
    assert out == f"{escaped} {escaped}\n"


@pytest.mark.parametrize(
    ("kind", "code", "status"),
    [
        ("server", 503, "error"),
        ("server", 404, "ok"),
        ("server", 200, "ok"),
        ("client", 404, "error"),
        ("client", 502, "error"),
        ("client", 302, "ok"),
        ("internal", 503, "ok"),
        ("producer", 500, "ok"),
    ],
)
def test_end_with_a_code_follows_the_http_conventions_of_the_spans_kind(kind: str, code: int, status: str):
    infratrace.configure('[trace]\ndriver = "discard"')
    span = infratrace.start_span("x", kind=kind)
    span.end(code=code)
    assert (span.status, span.status_code) == (status, code)


def test_end_with_a_code_keeps_a_status_set_before():
    infratrace.configure('[trace]\ndriver = "discard"')
    span = infratrace.start_span("x", kind="server")
    span.set_status("ok")
    span.end(code=503)
    assert (span.status, span.status_code) == ("ok", 503)


def test_the_applications_own_tables_are_left_alone():
    config = load_config('[tool.poetry]\nname = "shop"\n[tracker]\nurl = "x"\n[app]\ndebug = true\n[trace]\njson = true')
    assert config.connections[0].json
