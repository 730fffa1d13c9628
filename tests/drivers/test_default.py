"""driver = "default": errors to stderr, the rest to stdout; format or JSON lines."""

from __future__ import annotations

import json

import infratrace


def test_ok_to_stdout_errors_to_stderr_as_json(capfd):
    infratrace.configure("[trace]\njson = true")
    infratrace.trace("fine")
    infratrace.trace("broken", {"status": "error", "error": "boom"})
    infratrace.force_flush()
    out, err = capfd.readouterr()
    assert [json.loads(line)["name"] for line in out.splitlines()] == ["fine"]
    (line,) = err.splitlines()
    assert json.loads(line)["status_message"] == "boom"


def test_format_line_with_newlines_escaped(capfd):
    infratrace.configure('[trace]\nformat = "%name%|%error%"')
    infratrace.trace("multi\nline")
    infratrace.trace("bad", {"status": "error", "error": "a\nb"})
    infratrace.force_flush()
    out, err = capfd.readouterr()
    assert out == "multi\\nline|\n"
    assert err == "bad|a\\nb\n"


def test_console_is_also_available_as_console(capfd):
    infratrace.configure('[trace.c]\ndriver = "console"\nformat = "%name%"')
    infratrace.trace("x")
    infratrace.force_flush()
    assert capfd.readouterr().out == "x\n"
