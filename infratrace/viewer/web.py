"""The browser view: a page of plain HTML, CSS and JavaScript shipped in ``static/``,
served with its JSON API by the standard library's HTTP server, or written as one
self-contained file.

API (``GET``, JSON):

- ``/api/traces?q=<words>&status=<error|ok>&limit=<n>&known=<generation>`` —
  ``{generation, files, notes, spans, total, matched, traces: [summary…]}``: the
  traces whose id, services or span names contain every word of ``q`` (and of that
  status), newest first, at most ``limit`` (:data:`LIST_LIMIT`) of them;
  ``{generation, unchanged: true}`` when nothing was read since ``known``. A summary:
  ``trace_id, name, service, services, status, errors, spans, duration_ms, start_ms,
  time, names``.
- ``/api/traces/<trace id>`` — the summary plus ``spans``: each span in tree order
  (depth first, children by start) with its ``depth``, ``offset_ms`` from the trace's
  start, ``duration_ms``, ``self_ms``, ``slow``, status, attributes, resource and
  events (their ``offset_ms`` too).

The server listens on 127.0.0.1 only and answers only requests addressed to it by
that name (or ``localhost``), so a web page elsewhere cannot read traces through a
DNS name rebound to this machine. Files are read again every ``interval`` seconds
(:class:`~.reading.Watch`); the page asks for news as often.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from . import ViewerError
from .model import Span, Trace, local_time
from .reading import Watch

__all__ = ["LIST_LIMIT", "TraceStore", "ViewerServer", "export_html", "matches", "page", "trace_detail", "trace_summary"]

STATIC_FILES = {"viewer.css": "text/css; charset=utf-8", "viewer.js": "text/javascript; charset=utf-8"}
_DATA_TAG = '<script id="infratrace-data" type="application/json">null</script>'
_CSS_TAG = '<link rel="stylesheet" href="static/viewer.css">'
_JS_TAG = '<script src="static/viewer.js"></script>'
MAX_NAMES = 100  # span names per summary, for the search
LIST_LIMIT = 1000  # summaries per answer: the page lists the newest; a search reaches the others


# -- JSON of traces -----------------------------------------------------------------------


def trace_summary(trace: Trace) -> dict[str, Any]:
    names = list(dict.fromkeys(span.name for span in trace.spans))[:MAX_NAMES]
    return {
        "trace_id": trace.trace_id,
        "name": trace.name,
        "service": trace.service,
        "services": trace.services,
        "status": trace.status,
        "errors": trace.errors,
        "spans": len(trace.spans),
        "duration_ms": trace.duration_ms,
        "start_ms": trace.start_ns / 1e6,
        "time": local_time(trace.start_ns),
        "orphan_root": trace.root.orphan,
        "names": names,
    }


def matches(summary: dict[str, Any], words: Sequence[str], status: str = "") -> bool:
    """Does a summary match a search: every word (lower case) in its id, name,
    services or span names, and the status when one is given? (The page does the same
    in an exported file.)"""
    if status and summary["status"] != status:
        return False
    if not words:
        return True
    haystack = "\n".join([summary["trace_id"], summary["name"], summary["service"], *summary["services"], *summary["names"]])
    haystack = haystack.lower()
    return all(word in haystack for word in words)


def trace_detail(trace: Trace) -> dict[str, Any]:
    detail = trace_summary(trace)
    detail["spans"] = [_span(span, trace) for span in trace.walk()]
    detail["span_count"] = len(trace.spans)
    return detail


def _span(span: Span, trace: Trace) -> dict[str, Any]:
    origin = trace.start_ns
    return {
        "span_id": span.span_id,
        "parent_id": span.parent_id,
        "depth": span.depth,
        "children": len(span.children),
        "name": span.name,
        "kind": span.kind,
        "service": span.service,
        "pid": span.pid,
        "node": span.resource.get("node", ""),
        "status": span.status,
        "status_code": span.status_code,
        "status_message": span.status_message,
        "http_status": span.http_status,
        "offset_ms": (span.start_ns - origin) / 1e6,
        "duration_ms": span.duration_ms,
        "width_ms": (span.end_ns - span.start_ns) / 1e6,
        "self_ms": span.self_ms,
        "slow": span.slow,
        "orphan": span.orphan,
        "attributes": span.attributes,
        "resource": span.resource,
        "events": [
            {
                "name": str(event.get("name", "")),
                "offset_ms": (event["time_unix_nano"] - origin) / 1e6 if isinstance(event.get("time_unix_nano"), int) else None,
                "attributes": event.get("attributes") or {},
            }
            for event in span.events
        ],
        "origin": span.origin,
    }


# -- the page -------------------------------------------------------------------------------


def _static(name: str) -> str:
    return (resources.files(__package__) / "static" / name).read_text(encoding="utf-8")


def page(embedded: dict[str, Any] | None = None) -> str:
    """The page. With ``embedded`` data (``{"traces": [...], "details": {...}}``) it is
    one self-contained file: stylesheet, script and traces inline, nothing fetched."""
    html = _static("index.html")
    if embedded is None:
        return html
    data = json.dumps(embedded, ensure_ascii=False, separators=(",", ":"))
    # Inside <script>, "</" could end the element early: JSON allows "<\/" for it.
    data = data.replace("</", "<\\/").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    css = _static("viewer.css")
    js = _static("viewer.js").replace("</script", "<\\/script")
    for tag, text in ((_CSS_TAG, f"<style>\n{css}</style>"), (_JS_TAG, f"<script>\n{js}</script>")):
        if tag not in html:  # pragma: no cover - the shipped page has them
            raise RuntimeError(f"the page template lacks {tag}")
        html = html.replace(tag, text)
    return html.replace(_DATA_TAG, f'<script id="infratrace-data" type="application/json">{data}</script>')


def export_html(traces: Sequence[Trace], path: str, sources: Sequence[str]) -> None:
    """Write ``traces`` as one self-contained page."""
    embedded = {
        "files": list(sources),
        "traces": [trace_summary(t) for t in reversed(traces)],
        "details": {t.trace_id: trace_detail(t) for t in traces},
    }
    try:
        Path(path).write_text(page(embedded), encoding="utf-8")
    except OSError as exc:
        raise ViewerError(f"--html {path}: cannot be written: {exc.strerror or exc}") from None


# -- the live store ---------------------------------------------------------------------------


class TraceStore:
    """Spans by trace as they are read, for the server's threads: traces are built when
    asked (and kept until one of their spans changes), under one lock, because building
    a tree sets fields of its spans."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.generation = 0
        self._spans: dict[str, dict[str, Span]] = {}
        self._traces: dict[str, Trace] = {}
        self._summaries: tuple[int, list[dict[str, Any]]] = (-1, [])

    def add(self, spans: Iterable[Span]) -> int:
        """Add spans (one per trace and span id: a span read twice, from a live file
        and its rotated copy, counts once); returns how many traces changed."""
        changed: set[str] = set()
        with self.lock:
            for span in spans:
                self._spans.setdefault(span.trace_id, {})[span.span_id] = span
                changed.add(span.trace_id)
            for trace_id in changed:
                self._traces.pop(trace_id, None)
            if changed:
                self.generation += 1
        return len(changed)

    @property
    def span_count(self) -> int:
        with self.lock:
            return sum(len(members) for members in self._spans.values())

    def _trace(self, trace_id: str) -> Trace | None:
        trace = self._traces.get(trace_id)
        if trace is None:
            members = self._spans.get(trace_id)
            if not members:
                return None
            trace = self._traces[trace_id] = Trace(trace_id, members.values())
        return trace

    def summaries(self) -> tuple[int, list[dict[str, Any]]]:
        """``(generation, summaries)``, newest trace first."""
        with self.lock:
            if self._summaries[0] != self.generation:
                traces = [t for t in (self._trace(trace_id) for trace_id in self._spans) if t is not None]
                traces.sort(key=lambda t: (t.start_ns, t.trace_id), reverse=True)
                self._summaries = (self.generation, [trace_summary(t) for t in traces])
            return self._summaries

    def detail(self, trace_id: str) -> dict[str, Any] | None:
        with self.lock:
            trace = self._trace(trace_id)
            return None if trace is None else trace_detail(trace)


# -- the server --------------------------------------------------------------------------------


class ViewerServer(ThreadingHTTPServer):
    """``infratrace serve``: the page and its API on 127.0.0.1, with a thread that
    reads the watched files every ``interval`` seconds. :meth:`start` reads them once
    first, so a bad input fails before anything is served."""

    daemon_threads = True

    def __init__(self, watch: Watch, port: int = 0, interval: float = 1.0) -> None:
        self.watch = watch
        self.store = TraceStore()
        self.interval = interval
        self.problem = ""  # the last error the reading thread met
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        try:
            super().__init__(("127.0.0.1", port), _Handler)
        except OSError as exc:
            raise ViewerError(
                f"127.0.0.1:{port}: cannot listen: {exc.strerror or exc}; pick another port with --port (0: any free one)"
            ) from None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        self.store.add(self.watch.poll())
        self._reader = threading.Thread(target=self._read_loop, name="infratrace-serve-reader", daemon=True)
        self._reader.start()

    def _read_loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.store.add(self.watch.poll())
                self.problem = ""
            except Exception as exc:  # a file gone bad while served: shown on the page, served on
                self.problem = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ViewerError) else str(exc)

    def stop(self) -> None:
        """Stop :meth:`serve_forever` (running, or to come) and :meth:`close`."""
        self.shutdown()
        self.close()

    def close(self) -> None:
        """Stop reading the files and close the socket; for a server that was never
        served, :meth:`stop` would wait for :meth:`serve_forever` to run."""
        self._stop.set()
        self.server_close()
        if self._reader is not None:
            self._reader.join(5)
        self.watch.close()


class _Handler(BaseHTTPRequestHandler):
    server: ViewerServer
    server_version = "infratrace"
    sys_version = ""

    def do_GET(self) -> None:
        if not self._addressed_to_us():
            self._send(HTTPStatus.FORBIDDEN, b"forbidden: use http://127.0.0.1:<port>/\n", "text/plain; charset=utf-8")
            return
        parts = urlsplit(self.path)
        path = parts.path
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, page().encode("utf-8"), "text/html; charset=utf-8")
        elif path.startswith("/static/") and path[len("/static/") :] in STATIC_FILES:
            name = path[len("/static/") :]
            self._send(HTTPStatus.OK, _static(name).encode("utf-8"), STATIC_FILES[name])
        elif path == "/api/traces":
            self._traces(parse_qs(parts.query))
        elif path.startswith("/api/traces/"):
            detail = self.server.store.detail(unquote(path[len("/api/traces/") :]))
            if detail is None:
                self._json({"error": "no such trace"}, HTTPStatus.NOT_FOUND)
            else:
                self._json(detail)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    def _traces(self, query: dict[str, list[str]]) -> None:
        store = self.server.store
        known = query.get("known", [""])[0]
        if known and known == str(store.generation):
            self._json({"generation": store.generation, "unchanged": True})
            return
        generation, summaries = store.summaries()
        words = query.get("q", [""])[0].lower().split()
        status = query.get("status", [""])[0]
        try:
            limit = max(1, int(query.get("limit", [str(LIST_LIMIT)])[0]))
        except ValueError:
            limit = LIST_LIMIT
        found = [summary for summary in summaries if matches(summary, words, status)]
        watch = self.server.watch
        notes = watch.notes() + ([self.server.problem] if self.server.problem else [])
        self._json(
            {
                "generation": generation,
                "files": watch.files,
                "notes": notes,
                "spans": store.span_count,
                "total": len(summaries),
                "matched": len(found),
                "traces": found[:limit],
            }
        )

    def _addressed_to_us(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        name, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
        return name in ("127.0.0.1", "localhost") and port in ("", str(self.server.port))

    def _json(self, value: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
        )
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged: the terminal shows the URL and errors only."""
