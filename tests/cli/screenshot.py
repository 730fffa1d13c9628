"""The screenshots in docs/viewer.md, of the demo's checkout trace (a web request, the
Celery task it sent, the service calls the task made):

    .venv/bin/python -m example_apps.demo          # writes demo-output/traces.jsonl
    .venv/bin/python -m tests.cli.screenshot       # docs/viewer-serve.png, docs/viewer-terminal.png

(or ``-m tests.cli.screenshot OTHER/traces.jsonl`` for the demo's output elsewhere).

``viewer-serve.png`` is ``infratrace serve`` in headless chromium with the trace open
and its Celery task's span selected; ``viewer-terminal.png`` is ``infratrace view`` of
the same trace, in colour, rendered by chromium from rich's HTML export.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.terminal_theme import MONOKAI

from infratrace.viewer.model import build_traces
from infratrace.viewer.reading import read_spans
from infratrace.viewer.terminal import render_traces

from .browser import Browser, find_chromium, start_server, stop

ROOT = Path(__file__).resolve().parents[2]
TRACES = ROOT / "demo-output" / "traces.jsonl"
DOCS = ROOT / "docs"


def checkout_trace(traces: Path) -> str:
    """The demo's first checkout request whose task ran in the worker."""
    spans, _ = read_spans([str(traces)])
    for trace in build_traces(spans):
        if trace.name.startswith("http:POST") and any(s.kind == "consumer" for s in trace.spans):
            return trace.trace_id
    raise SystemExit(f"{traces} has no checkout trace: run .venv/bin/python -m example_apps.demo first")


def terminal_page(traces: Path, trace_id: str) -> str:
    spans, _ = read_spans([str(traces)])
    console = Console(record=True, width=132, force_terminal=True, color_system="truecolor", file=open("/dev/null", "w"))  # noqa: SIM115
    render_traces([t for t in build_traces(spans) if t.trace_id == trace_id], console)
    return console.export_html(inline_styles=True, theme=MONOKAI)


def main() -> int:
    traces = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else TRACES
    if not traces.exists():
        print(f"{traces} is missing: run .venv/bin/python -m example_apps.demo first", file=sys.stderr)
        return 1
    executable, why = find_chromium()
    if executable is None:
        print(why, file=sys.stderr)
        return 1
    trace_id = checkout_trace(traces)
    home = traces.parent.parent  # served as demo-output/traces.jsonl, as the demo names it
    process, url = start_server([str(traces.relative_to(home))], cwd=home)
    browser = Browser(executable, width=1600, height=660)
    try:
        browser.navigate(f"{url}#trace={trace_id}")
        browser.wait_for("document.querySelectorAll('#rows .span-row').length > 3", "the trace")
        browser.click("#rows .span-row:nth-child(4)")  # the task's consumer span
        browser.wait_for("!document.getElementById('details').hidden", "the span's details")
        browser.screenshot(DOCS / "viewer-serve.png")
        with tempfile.TemporaryDirectory() as directory:
            page = Path(directory) / "terminal.html"
            page.write_text(terminal_page(traces, trace_id))
            browser.navigate(page.as_uri())
            size = browser.evaluate(
                "(() => { document.body.style.margin = '0'; const pre = document.querySelector('pre');"
                " pre.style.margin = '0'; pre.style.padding = '8px'; pre.style.display = 'inline-block';"
                " const r = pre.getBoundingClientRect(); return [Math.ceil(r.width), Math.ceil(r.height)]; })()"
            )
            metrics = {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": False}
            browser.call("Emulation.setDeviceMetricsOverride", metrics)
            browser.screenshot(DOCS / "viewer-terminal.png")
    finally:
        browser.close()
        stop(process)
    print(f"wrote {DOCS / 'viewer-serve.png'} and {DOCS / 'viewer-terminal.png'} (trace {trace_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
