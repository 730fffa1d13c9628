"""Traces in a terminal, drawn with ``rich``: per trace a header line, then one row per
span — its place in the tree, service, process id, duration, and a waterfall bar placed
by its start offset and duration on the trace's time line.

Errors are red and marked ``✗`` (with their message); the spans with the most time of
their own (:data:`~.model.SLOW_MARKS`) are yellow and marked ``▲``. Colours follow the
terminal (none when the output is not one, or with ``NO_COLOR``); the marks make the
same points without them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

from .._errors import toml_text
from .model import Span, Trace, bar_cells, format_ms, local_time

__all__ = ["ERROR_MARK", "LEGEND", "SLOW_MARK", "bar_width_for", "header", "render_trace", "render_traces", "rows"]

ERROR_MARK = "✗"
SLOW_MARK = "▲"
BAR = "█"
LEGEND = f"{ERROR_MARK} error   {SLOW_MARK} most time of its own   bars: start and duration on the trace's time line"
_OK, _ERROR, _SLOW = "green", "red", "yellow"


def bar_width_for(console: Console) -> int:
    """The waterfall's width: a third of the terminal, 20 to 60 cells."""
    return max(20, min(60, console.width // 3))


def render_traces(
    traces: Sequence[Trace],
    console: Console,
    *,
    details: bool = False,
    bar_width: int | None = None,
    legend: bool = True,
) -> None:
    """Print each trace, a blank line after each, then the legend."""
    width = bar_width or bar_width_for(console)
    for trace in traces:
        render_trace(trace, console, details=details, bar_width=width)
        console.print()
    if legend and traces:
        console.print(Text(LEGEND, style="dim"), soft_wrap=True)


def render_trace(trace: Trace, console: Console, *, details: bool = False, bar_width: int = 40, title: str = "") -> None:
    console.print(header(trace, title), soft_wrap=True)  # long lines are the terminal's to wrap
    for line in rows(trace, bar_width, console.width, details):
        console.print(line, soft_wrap=True)


def header(trace: Trace, title: str = "") -> Text:
    text = Text()
    if title:
        text.append(f"{title} ", style="bold magenta")
    text.append("trace ", style="dim")
    text.append(trace.trace_id, style="bold cyan")
    text.append(f"  {local_time(trace.start_ns)}", style="dim")
    text.append(f"  {format_ms(trace.duration_ms)}", style="bold")
    count = len(trace.spans)
    text.append(f"  {count} span{'s' if count != 1 else ''}")
    if trace.errors:
        text.append(f", {trace.errors} error{'s' if trace.errors != 1 else ''}", style="bold red")
    if trace.root.orphan:
        text.append("  its root is not in these files", style="dim")
    return text


def rows(trace: Trace, bar_width: int, width: int, details: bool = False) -> list[Text]:
    """A line of column titles, then a line per span: mark, tree and name, service,
    pid, duration, waterfall bar. Every column but the span's keeps its width; the
    span's takes what is left of ``width`` (its text cut with an ellipsis), and the
    waterfall is made narrower, down to 10 cells, to leave it at least 24. With
    ``details``, each span's attributes and events follow it, over the whole width."""
    service_width = min(24, max([len("service"), *(cell_len(s.service) for s in trace.spans)]))
    pid_width = max([3, *(len(str(s.pid or "")) for s in trace.spans)])
    duration_width = max([len("duration"), *(len(format_ms(s.duration_ms)) for s in trace.spans)])
    available = width - (2 + service_width + 1 + pid_width + 1 + duration_width + 1 + 1)
    bar_width = max(10, min(bar_width, available - 24))
    name_width = max(10, available - bar_width)
    widths = (name_width, service_width, pid_width, duration_width, bar_width)

    def line(mark: Text, cells: tuple[Text, Text, Text, Text, Text]) -> Text:
        out = Text()
        out.append_text(mark)
        for index, (cell, size) in enumerate(zip(cells, widths, strict=True)):
            out.append(" ")
            out.append_text(_fit(cell, size, right=index in (2, 3)))
        return out

    span_title, service_title, pid_title, duration_title, timeline_title = (
        Text(title, style="dim") for title in ("span", "service", "pid", "duration", "timeline")
    )
    out = [line(Text(" "), (span_title, service_title, pid_title, duration_title, timeline_title))]
    extent = trace.end_ns - trace.start_ns
    for span, guide in _with_guides(trace):
        mark, style = _mark(span)
        label = Text(guide, style="dim")
        label.append(span.name, style=style or "")
        if span.kind != "internal":
            label.append(f" {span.kind}", style="dim")
        if span.http_status is not None:
            label.append(f" {span.http_status}", style="bold red" if span.error else "dim")
        if span.orphan:
            label.append(" (parent not in these files)", style="dim")
        if span.error and span.status_message:
            label.append(f" {span.status_message}", style=_ERROR)
        first, cells = bar_cells(span.start_ns, span.end_ns, trace.start_ns, extent, bar_width)
        bar = Text(" " * first)
        bar.append(BAR * cells, style=_ERROR if span.error else (_SLOW if span.slow else _OK))
        duration = Text(format_ms(span.duration_ms), style=f"bold {_SLOW}" if span.slow else "")
        service = Text(span.service, style="blue")
        pid = Text(str(span.pid or ""), style="dim")
        out.append(line(Text(mark or " ", style=style or ""), (label, service, pid, duration, bar)))
        if details:
            indent = " " * (2 + cell_len(guide) + 3)
            for text in _detail_lines(span, trace):
                out.append(Text(indent + text, style="dim"))
    return out


def _fit(text: Text, size: int, right: bool = False) -> Text:
    """``text`` in exactly ``size`` cells: cut with an ellipsis, padded with spaces."""
    fitted = text.copy()
    fitted.no_wrap = True
    if fitted.cell_len > size:
        fitted.truncate(size, overflow="ellipsis")
    gap = size - fitted.cell_len
    if right:
        return Text(" " * gap) + fitted
    fitted.append(" " * gap)
    return fitted


def _mark(span: Span) -> tuple[str, str]:
    if span.error:
        return ERROR_MARK, f"bold {_ERROR}"
    if span.slow:
        return SLOW_MARK, f"bold {_SLOW}"
    return "", ""


def _with_guides(trace: Trace) -> Iterable[tuple[Span, str]]:
    """Each span with the tree guides before its name (``├─ ``, ``│  ``…)."""

    def walk(span: Span, prefix: str, last: bool, top: bool) -> Iterable[tuple[Span, str]]:
        yield span, ("" if top else prefix + ("└─ " if last else "├─ "))
        inner = "" if top else prefix + ("   " if last else "│  ")
        for index, child in enumerate(span.children):
            yield from walk(child, inner, index == len(span.children) - 1, False)

    for root in trace.roots:
        yield from walk(root, "", True, True)


def _detail_lines(span: Span, trace: Trace) -> list[str]:
    lines = [f"{key} = {_value(value)}" for key, value in span.attributes.items()]
    for event in span.events:
        attrs: dict[str, Any] = event.get("attributes") or {}
        when = event.get("time_unix_nano")
        at = f" at +{format_ms((when - trace.start_ns) / 1e6)}" if isinstance(when, int) else ""
        if event.get("name") == "exception":
            lines.append(f"exception{at}: {attrs.get('exception.type', '')}: {attrs.get('exception.message', '')}")
            lines.extend(str(attrs.get("exception.stacktrace", "")).rstrip("\n").splitlines())
        else:
            shown = ", ".join(f"{k} = {_value(v)}" for k, v in attrs.items())
            lines.append(f"event {event.get('name', '')}{at}" + (f": {shown}" if shown else ""))
    return lines


def _value(value: Any) -> str:
    return toml_text(value)
