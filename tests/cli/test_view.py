"""``infratrace view``: trees, waterfall bars and figures from recorded files."""

from __future__ import annotations

import gzip
import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infratrace.cli import read_spans, render_trees
from infratrace.viewer import ViewerError
from infratrace.viewer.model import Span, Trace, bar_cells, build_traces, format_ms, parse_since
from infratrace.viewer.reading import read_spans as read

from .conftest import ROOT, Cli, bar, run_module, table_rows
from .recorded import CHECKOUT, FAIL, HEALTH, MS, T0, WEB, Recording, _span, driver, write

# 110 columns give a waterfall of 36 cells: 5 ms a cell for CHECKOUT's 180 ms.
WIDTH = "110"

CHECKOUT_TREE = [
    # mark, name with guides, service, pid, duration, (first cell, cells)
    ("", "http:POST /checkout/{id} server 202", "shop-web", "1111", "120.0 ms", (0, 24)),
    ("▲", "└─ web:shop.views.checkout", "shop-web", "1111", "116.0 ms", (0, 24)),
    ("▲", "   ├─ service:orders.place", "shop-web", "1111", "30.00 ms", (2, 6)),
    ("", "   │  └─ method:orders.checksum", "shop-web", "1111", "2.000 ms", (2, 1)),
    ("", "   └─ queue:shop.process_order producer", "shop-web", "1111", "10.00 ms", (10, 2)),
    ("", "      └─ queue:shop.process_order consumer", "shop-worker", "2222", "110.0 ms", (14, 22)),
    ("▲", "         └─ service:payments.charge", "shop-worker", "2222", "90.00 ms", (16, 18)),
]


def shown(rows: list[dict[str, str]]) -> list[tuple[str, str, str, str, str, tuple[int, int]]]:
    return [(r["mark"], r["name"], r["service"], r["pid"], r["duration"], bar(r["bar"])) for r in rows]


def traces_in(out: str) -> list[str]:
    return [line.split()[1] for line in out.splitlines() if line.startswith("trace ")]


def test_a_trace_split_across_two_processes_and_a_rotation_is_one_tree(cli: Cli, recording: Recording) -> None:
    result = cli("view", recording.web, recording.worker, "--rotated", "--width", WIDTH)
    assert result.code == 0, result.err
    assert result.err == ""
    assert traces_in(result.out) == [CHECKOUT, FAIL, HEALTH]
    assert f"trace {CHECKOUT}  2027-01-15 08:00:00.000  180.0 ms  7 spans\n" in result.out
    rows = table_rows(result.out, CHECKOUT)
    assert shown(rows) == CHECKOUT_TREE
    assert all(len(r["bar"]) == 36 for r in rows)  # every bar on the same 36-cell time line
    assert result.out.rstrip().endswith(f"3 traces of 3, 10 spans, from {recording.web}, {recording.worker}")


def test_the_error_trace_is_marked_with_its_message_and_http_status(cli: Cli, recording: Recording) -> None:
    result = cli("view", recording.directory, "--trace", FAIL, "--width", "140")
    assert result.code == 0, result.err
    assert f"trace {FAIL}  2027-01-15 08:00:01.000  8.000 ms  2 spans, 2 errors\n" in result.out
    rows = table_rows(result.out, FAIL)
    assert [(r["mark"], r["name"], r["duration"], bar(r["bar"])) for r in rows] == [
        ("✗", "http:GET /fail server 500 RuntimeError: payment backend unreachable", "8.000 ms", (0, 46)),
        ("✗", "└─ web:shop.views.fail RuntimeError: payment backend unreachable", "6.000 ms", (6, 34)),
    ]


def test_details_show_attributes_and_the_exception_s_stack_trace(cli: Cli, recording: Recording) -> None:
    result = cli("view", recording.directory, "--trace", FAIL, "--details", "--width", "140")
    assert result.code == 0, result.err
    lines = [line.strip() for line in result.out.splitlines()]
    assert 'http.route = "/fail"' in lines
    assert "http.response.status_code = 500" in lines
    event = lines.index("exception at +6.000 ms: RuntimeError: payment backend unreachable")
    assert lines[event + 1 : event + 5] == [
        "Traceback (most recent call last):",
        'File "shop/views.py", line 41, in fail',
        'raise RuntimeError("payment backend unreachable")',
        "RuntimeError: payment backend unreachable",
    ]


def test_one_process_s_file_shows_the_other_s_part_as_missing(cli: Cli, recording: Recording) -> None:
    result = cli("view", recording.worker, "--width", "140")  # a waterfall of 46 cells
    assert result.code == 0, result.err
    assert f"trace {CHECKOUT}  2027-01-15 08:00:00.070  110.0 ms  2 spans  its root is not in these files\n" in result.out
    assert shown(table_rows(result.out, CHECKOUT)) == [
        ("▲", "queue:shop.process_order consumer (parent not in these files)", "shop-worker", "2222", "110.0 ms", (0, 46)),
        ("▲", "└─ service:payments.charge", "shop-worker", "2222", "90.00 ms", (4, 38)),
    ]


def test_a_gzipped_rotated_part_is_read_as_it_is(cli: Cli, recording: Recording) -> None:
    first = recording.web_parts[0]
    assert first.name.endswith(".jsonl.gz") and first.read_bytes()[:2] == b"\x1f\x8b"
    result = cli("view", first, "--width", "160")
    assert result.code == 0, result.err
    # method:orders.checksum, service:orders.place, queue:shop.process_order (producer)
    assert [r["name"] for r in table_rows(result.out, CHECKOUT)] == [
        "service:orders.place (parent not in these files)",
        "└─ method:orders.checksum",
        "queue:shop.process_order producer (parent not in these files)",
    ]


def test_the_live_file_alone_and_with_its_rotated_parts(cli: Cli, recording: Recording) -> None:
    alone = cli("view", recording.web, "--width", "160")
    assert alone.code == 0, alone.err
    assert traces_in(alone.out) == [FAIL, HEALTH]
    assert [r["name"] for r in table_rows(alone.out, FAIL)] == [
        "http:GET /fail server 500 RuntimeError: payment backend unreachable"
    ]
    whole = cli("view", recording.web, "--rotated", "--width", WIDTH)
    assert traces_in(whole.out) == [CHECKOUT, FAIL, HEALTH]
    assert [r["name"] for r in table_rows(whole.out, CHECKOUT)] == [row[1] for row in CHECKOUT_TREE[:5]]


def test_a_directory_is_every_trace_file_in_it(cli: Cli, recording: Recording) -> None:
    result = cli("view", recording.directory, "--width", WIDTH)
    assert result.code == 0, result.err
    assert traces_in(result.out) == [CHECKOUT, FAIL, HEALTH]
    assert shown(table_rows(result.out, CHECKOUT)) == CHECKOUT_TREE


def test_stdin_plain_and_gzipped(recording: Recording) -> None:
    plain = run_module("view", "-", "--width", "160", stdin=recording.worker.read_bytes())
    assert plain.returncode == 0, plain.stderr
    assert b"queue:shop.process_order consumer (parent not in these files)" in plain.stdout
    zipped = run_module("view", "-", "--width", WIDTH, stdin=recording.web_parts[1].read_bytes())
    assert zipped.returncode == 0, zipped.stderr
    out = zipped.stdout.decode()
    assert traces_in(out) == [CHECKOUT, FAIL]
    assert [r["name"] for r in table_rows(out, CHECKOUT)] == ["http:POST /checkout/{id} server 202", "└─ web:shop.views.checkout"]
    assert "from stdin" in out


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--trace", "4bf92f35"], [CHECKOUT]),
        (["--trace", FAIL.upper()], [FAIL]),
        (["--name", "queue:*"], [CHECKOUT]),
        (["--name", "*health"], [HEALTH]),
        (["--status", "error"], [FAIL]),
        (["--status", "ok"], [CHECKOUT, HEALTH]),
        (["--min-duration", "100ms"], [CHECKOUT]),
        (["--min-duration", "0.005"], [CHECKOUT, FAIL]),
        (["--since", "2027-01-15T08:00:00.500Z"], [FAIL, HEALTH]),
        (["--since", "2027-01-15 08:00:01.5"], [HEALTH]),
        (["--limit", "2"], [FAIL, HEALTH]),
        (["--name", "web:*", "--status", "error"], [FAIL]),
        (["--status", "ok", "--limit", "1"], [HEALTH]),
    ],
)
def test_filters(cli: Cli, recording: Recording, options: list[str], expected: list[str]) -> None:
    result = cli("view", recording.directory, *options, "--width", WIDTH)
    assert result.code == 0, result.err
    assert traces_in(result.out) == expected


def test_since_a_duration_back_from_now(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "recent.jsonl"
    now = time.time_ns()
    target = driver(f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{path}"\n')
    try:
        write(target, [_span("job:old", "internal", "1" * 32, "1" * 16, "", 0, 5, WEB, at=now - 3600 * 10**9)])
        write(target, [_span("job:new", "internal", "2" * 32, "2" * 16, "", 0, 5, WEB, at=now - 60 * 10**9)])
    finally:
        target.close()
    assert traces_in(cli("view", path, "--since", "10m").out) == ["2" * 32]
    assert traces_in(cli("view", path, "--since", "2h").out) == ["1" * 32, "2" * 32]


def test_renamed_fields_need_the_configuration_that_wrote_them(cli: Cli, recording: Recording) -> None:
    without = cli("view", recording.renamed)
    assert without.code == 2
    assert without.out == ""
    assert without.err == (
        f"infratrace view: {recording.renamed}: no spans: 5 JSON record(s) without trace_id and span_id "
        "(keys: tid, sid, parent, step, kind, service_name, target, status); "
        "for a file written with `fields` renames, give its configuration with --config\n"
    )
    with_config = cli("view", recording.renamed, "--config", recording.renamed_config, "--width", WIDTH)
    assert with_config.code == 0, with_config.err
    assert f"trace {CHECKOUT}  2027-01-15 08:00:00.000  120.0 ms  5 spans\n" in with_config.out
    rows = table_rows(with_config.out, CHECKOUT)
    assert [(r["name"], r["duration"]) for r in rows] == [(row[1], row[4]) for row in CHECKOUT_TREE[:5]]
    # 120 ms on 36 cells
    assert [bar(r["bar"]) for r in rows] == [(0, 36), (1, 34), (3, 9), (4, 1), (15, 3)]
    named = cli("view", recording.renamed, "--config", recording.renamed_config, "--connection", "file", "--width", WIDTH)
    assert named.out == with_config.out


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["missing.jsonl"], 2, "missing.jsonl: no such file or directory"),
        (["{garbage}"], 2, "{garbage}: not a JSON-lines span file: line 1 is not a JSON object: binary data"),
        (["{text}"], 2, "{text}: not a JSON-lines span file: line 2 is not a JSON object: 'GET /health 200'"),
        (["{empty}"], 1, "no spans in {empty}"),
        (["{dir}", "--trace", "deadbeef"], 1, "no trace matches --trace deadbeef (3 traces in {dir})"),
        (
            ["{dir}", "--name", "nothing*", "--status", "error"],
            1,
            "no trace matches --name 'nothing*' --status error (3 traces in {dir})",
        ),
        (["{dir}", "--min-duration", "soon"], 2, "--min-duration 'soon': expected a duration such as 50ms, 1.5s or 2m"),
        (
            ["{dir}", "--since", "yesterday"],
            2,
            "--since 'yesterday': expected a duration back from now (10m, 2h, 1d) or a time (2026-11-27T09:25, 2026-11-27 09:25:23Z)",
        ),
        (["{dir}", "--connection", "file"], 2, "--connection needs --config"),
        (["{dir}", "--config", "{text}"], 2, '--config: {text}: <toml> = "\\nGET /health 200\\n" is invalid: not valid TOML: '),
        (
            ["{renamed}", "--config", "{renamed_config}", "--connection", "web"],
            2,
            "--connection 'web': {renamed_config} has no such connection; it has: file",
        ),
        (["{empty_dir}"], 2, "{empty_dir}: no trace files in this directory (*.jsonl, *.json, *.ndjson, *.log, *.txt, .gz)"),
    ],
)
def test_bad_input_is_one_line_and_an_exit_status(
    cli: Cli, recording: Recording, tmp_path: Path, argv: list[str], code: int, message: str
) -> None:
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    text = tmp_path / "access.log"
    text.write_text("\nGET /health 200\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    names = {
        "garbage": garbage,
        "text": text,
        "empty": empty,
        "dir": recording.directory,
        "renamed": recording.renamed,
        "renamed_config": recording.renamed_config,
        "empty_dir": empty_dir,
    }
    result = cli("view", *[a.format(**names) for a in argv])
    assert result.code == code
    assert result.out == ""
    assert result.err.startswith("infratrace view: " + message.format(**names))
    assert result.err.count("\n") == 1


def test_no_traceback_in_a_real_process_either(tmp_path: Path) -> None:
    for argv in (["view", "missing.jsonl"], ["view", str(tmp_path)], ["tree", "missing.jsonl", "--trace", "deadbeef"]):
        result = run_module(*argv)
        assert result.returncode == 2
        assert b"Traceback" not in result.stderr
        assert result.stderr.count(b"\n") == 1


def test_a_few_bad_lines_are_skipped_with_a_note(cli: Cli, recording: Recording) -> None:
    with recording.worker.open("a") as handle:
        handle.write('not json\n{"no": "ids"}\n')
    result = cli("view", recording.worker, "--width", WIDTH)
    assert result.code == 0
    assert (
        result.err
        == f"infratrace view: note: {recording.worker}: 2 line(s) skipped, not span records (first at line 3: 'not json')\n"
    )
    assert traces_in(result.out) == [CHECKOUT]


def test_a_truncated_gzip_part_is_an_error_not_a_traceback(cli: Cli, recording: Recording, tmp_path: Path) -> None:
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(recording.web_parts[1].read_bytes()[:40])
    result = cli("view", cut)
    assert result.code == 2
    assert result.err.startswith(f"infratrace view: {cut}: cannot be read: read stopped at line 1: ")
    # Cut after its first lines: those are shown, and the rest is noted.
    whole = gzip.decompress(recording.web_parts[1].read_bytes())
    first_line = whole[: whole.index(b"\n") + 1]
    cut.write_bytes(_gzip_cut_after(first_line, whole))
    partial = cli("view", cut, "--width", WIDTH)
    assert partial.code == 0, partial.err
    assert "read stopped at line" in partial.err
    assert "web:shop.views.checkout" in partial.out


def _gzip_cut_after(first: bytes, whole: bytes) -> bytes:
    """A gzip stream whose first line is whole and whose end is missing."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as stream:
        stream.write(first)
        stream.flush()
        flushed = buffer.tell()
        stream.write(whole[len(first) :])
    return buffer.getvalue()[: flushed + 4]


def test_html_export_is_one_self_contained_page(cli: Cli, recording: Recording, tmp_path: Path) -> None:
    out = tmp_path / "traces.html"
    result = cli("view", recording.directory, "--status", "ok", "--html", out)
    assert result.code == 0, result.err
    assert result.out == f"{out}: 2 traces, 8 spans\n"
    html = out.read_text()
    assert "<script src" not in html and "<link" not in html
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)
    assert not re.search(r"@import|url\(\s*['\"]?(?:https?:)?//", html)
    embedded = re.search(r'<script id="infratrace-data" type="application/json">(.*?)</script>', html, re.S)
    assert embedded is not None
    data = json.loads(embedded.group(1))
    assert [t["trace_id"] for t in data["traces"]] == [HEALTH, CHECKOUT]  # newest first
    detail = data["details"][CHECKOUT]
    assert [(s["depth"], s["name"], s["offset_ms"], s["width_ms"]) for s in detail["spans"]] == [
        (0, "http:POST /checkout/{id}", 0.0, 120.0),
        (1, "web:shop.views.checkout", 2.0, 116.0),
        (2, "service:orders.place", 10.0, 30.0),
        (3, "method:orders.checksum", 12.0, 2.0),
        (2, "queue:shop.process_order", 50.0, 10.0),
        (3, "queue:shop.process_order", 70.0, 110.0),
        (4, "service:payments.charge", 80.0, 90.0),
    ]
    assert detail["duration_ms"] == 180.0


def test_tree_is_view_and_stats_counts(cli: Cli, recording: Recording) -> None:
    assert cli("tree", recording.directory, "--width", WIDTH).out == cli("view", recording.directory, "--width", WIDTH).out
    stats = cli("stats", recording.directory)
    assert stats.code == 0
    assert stats.out.splitlines() == [
        "       1  error  http:GET /fail",
        "       1  ok     http:GET /health",
        "       1  ok     http:POST /checkout/{id}",
        "       1  ok     method:orders.checksum",
        "       2  ok     queue:shop.process_order",
        "       1  ok     service:orders.place",
        "       1  ok     service:payments.charge",
        "       1  ok     web:shop.views.checkout",
        "       1  error  web:shop.views.fail",
    ]


def test_python_dash_m_and_every_command_s_help_has_examples() -> None:
    top = run_module("--help")
    assert top.returncode == 0
    assert b"examples:\n  infratrace view logs/traces.jsonl" in top.stdout
    for command in ("view", "tail", "serve", "check", "stats"):
        result = run_module(command, "--help")
        assert result.returncode == 0, result.stderr
        assert b"examples:\n  infratrace " + command.encode() in result.stdout


def test_importing_infratrace_imports_neither_rich_nor_the_viewer() -> None:
    code = "import sys, infratrace; print(sorted(m for m in sys.modules if m == 'rich' or m.startswith(('rich.', 'infratrace.viewer', 'infratrace.cli'))))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.stdout == "[]\n", result.stderr


def test_the_demo_s_functions_read_and_draw_the_same_trees(recording: Recording) -> None:
    records = read_spans([recording.worker])
    assert [r["name"] for r in records] == ["service:payments.charge", "queue:shop.process_order"]
    out = io.StringIO()
    assert render_trees(records, out) == 1
    assert "\n▲ queue:shop.process_order" in out.getvalue()
    assert "\n▲ └─ service:payments" in out.getvalue()
    assert render_trees(records, io.StringIO(), trace_id="deadbeef") == 0


# -- the model, on its own --------------------------------------------------------------------


def test_bar_cells() -> None:
    assert bar_cells(T0, T0 + 180 * MS, T0, 180 * MS, 36) == (0, 36)
    assert bar_cells(T0 + 12 * MS, T0 + 14 * MS, T0, 180 * MS, 36) == (2, 1)  # shorter than a cell: one cell
    assert bar_cells(T0 + 180 * MS, T0 + 180 * MS, T0, 180 * MS, 36) == (35, 1)  # at the very end: still drawn
    assert bar_cells(T0, T0, T0, 0, 20) == (0, 20)  # a trace of one instant fills the line


@pytest.mark.parametrize(
    ("ms", "text"), [(1234.5, "1.23 s"), (294.83, "294.8 ms"), (35.164, "35.16 ms"), (5.9144, "5.914 ms"), (0.0534, "0.053 ms")]
)
def test_format_ms(ms: float, text: str) -> None:
    assert format_ms(ms) == text


def test_parse_since() -> None:
    now = T0 + 3600 * 10**9
    assert parse_since("10m", now) == now - 600 * 10**9
    assert parse_since("2027-01-15T08:00:00Z", now) == T0
    assert parse_since("2027-01-15T09:00:00+01:00", now) == T0
    with pytest.raises(ViewerError):
        parse_since("soon", now)


def test_self_time_and_a_parent_cycle_in_bad_input(recording: Recording) -> None:
    spans, notes = read([str(recording.web)], rotated=True)
    assert notes == []
    (checkout,) = [t for t in build_traces(spans) if t.trace_id == CHECKOUT]
    assert {s.name: round(s.self_ms, 3) for s in checkout.spans} == {
        "http:POST /checkout/{id}": 4.0,
        "web:shop.views.checkout": 76.0,
        "service:orders.place": 28.0,
        "method:orders.checksum": 2.0,
        "queue:shop.process_order": 10.0,
    }
    # Two spans, each the other's parent: both shown, as roots whose parent is missing.
    a = Span(CHECKOUT, "1" * 16, "2" * 16, "a", start_ns=0, end_ns=5)
    b = Span(CHECKOUT, "2" * 16, "1" * 16, "b", start_ns=1, end_ns=4)
    looped = Trace(CHECKOUT, [a, b])
    assert [(s.name, s.depth, s.orphan) for s in looped.walk()] == [("a", 0, True), ("b", 0, True)]
