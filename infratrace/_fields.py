"""Span → output record: the stable JSON schema, ``fields`` selection/renaming and
``format`` line templates (SPEC §4–§5).

Everything here runs on the pipeline's background thread, never on ``end()``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import _span
from ._span import Span

_orjson: Any
try:  # orjson is ~10x faster than json for these records; json is the fallback.
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised only without the dependency
    _orjson = None
_fragment = _orjson is not None and hasattr(_orjson, "Fragment")


# The C extension (its StableLines: csrc/speedups/encode.c), or None when it is not
# built: StableJSONLine is then the encoder. Imported even when INFRATRACE_PURE_PYTHON
# was set at start-up, since speedups_enabled() reads that variable at each call.
_speedups: Any = _span.import_speedups()

__all__ = [
    "DEFAULT_FIELDS",
    "FIELD_NAMES",
    "LineFormat",
    "RecordShape",
    "ResourceView",
    "encode_json",
    "field_getter",
    "span_record",
    "stable_line_encoder",
]

SCHEMA_VERSION = 1

# The stable JSON-lines schema (docs/schema.md): these keys, in this order.
DEFAULT_FIELDS: tuple[str, ...] = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "service_name",
    "target",
    "status",
    "status_code",
    "status_message",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "duration_ms",
    "start_ms",
    "end_ms",
    "timestamp",
    "attributes",
    "resource",
    "project",
    "profile",
    "node",
)

_OK = ("ok", 0, "")
ENTRY_KINDS = frozenset({"method", "service", "trigger", "http", "web", "event", "queue", "cron"})


class ResourceView:
    """The process-wide resource as the formatters need it (rebuilt after a fork)."""

    __slots__ = ("attributes", "instance", "json", "node", "pid", "profile", "project", "role", "service_name")

    def __init__(self, attributes: Mapping[str, Any]) -> None:
        self.attributes = dict(attributes)
        # Serialised once: every JSON line embeds the same resource.
        self.json: Any = _orjson.Fragment(encode_json(self.attributes)) if _fragment else self.attributes
        self.service_name = str(attributes.get("service.name", ""))
        self.project = str(attributes.get("project", ""))
        self.profile = str(attributes.get("profile", ""))
        self.role = str(attributes.get("role", ""))
        self.node = str(attributes.get("node", ""))
        self.pid = int(attributes.get("process.pid", 0))
        self.instance = f"{self.node}:{self.pid}"


# -- time rendering (cached per second: strftime is the expensive part) -------------
_utc_cache: tuple[int, str] = (-1, "")
_local_cache: tuple[int, str] = (-1, "")


def rfc3339(unix_ns: int) -> str:
    """``2026-11-27T09:25:23.123456Z``"""
    global _utc_cache
    sec = unix_ns // 1_000_000_000
    cached = _utc_cache
    if cached[0] != sec:
        cached = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
        _utc_cache = cached
    return "%s.%06dZ" % (cached[1], (unix_ns % 1_000_000_000) // 1000)


def _local_prefix(sec: int) -> str:
    global _local_cache
    cached = _local_cache
    if cached[0] != sec:
        cached = (sec, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(sec)))
        _local_cache = cached
    return cached[1]


def local_ms(unix_ns: int) -> str:
    """``2026-11-27 10:25:23.123`` (local time)"""
    sec, frac = divmod(unix_ns, 1_000_000_000)
    return f"{_local_prefix(sec)}.{frac // 1_000_000:03d}"


def local_us(unix_ns: int) -> str:
    """``2026-11-27 10:25:23.123456`` (local time)"""
    sec, frac = divmod(unix_ns, 1_000_000_000)
    return f"{_local_prefix(sec)}.{frac // 1000:06d}"


# -- field getters -----------------------------------------------------------------
Getter = Callable[[Span, ResourceView], Any]


def _start(s: Span) -> int:
    return s._t0 + _span._clock_offset_ns


def _end(s: Span) -> int:
    return s._t1 + _span._clock_offset_ns


def _service_name(s: Span, r: ResourceView) -> Any:
    return s.attributes.get("service") or r.service_name


def _entry(s: Span, r: ResourceView) -> str:
    prefix, sep, _ = s.name.partition(":")
    if sep and prefix in ENTRY_KINDS:
        return prefix
    kind = s.attributes.get("kind")
    return kind if isinstance(kind, str) and kind in ENTRY_KINDS else ""


def events_as_dicts(s: Span) -> list[dict[str, Any]]:
    return [{"name": name, "time_unix_nano": ts, "attributes": attrs} for name, ts, attrs in s._events or ()]


_GETTERS: dict[str, Getter] = {
    "trace_id": lambda s, r: "%032x" % s._tid,
    "span_id": lambda s, r: "%016x" % s._sid,
    "parent_span_id": lambda s, r: "%016x" % s._pid if s._pid else "",
    "name": lambda s, r: s.name,
    "kind": lambda s, r: s.kind,
    "service_name": _service_name,
    "target": lambda s, r: s.attributes.get("target", ""),
    "status": lambda s, r: s.status,
    "status_code": lambda s, r: s.status_code,
    "status_message": lambda s, r: s.status_message,
    "start_time_unix_nano": lambda s, r: _start(s),
    "end_time_unix_nano": lambda s, r: _end(s),
    "duration_ms": lambda s, r: (s._t1 - s._t0) / 1e6,
    "duration_nano": lambda s, r: s._t1 - s._t0,
    "start_ms": lambda s, r: _start(s) // 1_000_000,
    "end_ms": lambda s, r: _end(s) // 1_000_000,
    "timestamp": lambda s, r: rfc3339(_start(s)),
    "time": lambda s, r: local_ms(_start(s)),
    "ts": lambda s, r: local_us(_start(s)),
    "attributes": lambda s, r: s.attributes,
    "resource": lambda s, r: r.attributes,
    "project": lambda s, r: r.project,
    "profile": lambda s, r: r.profile,
    "role": lambda s, r: r.role,
    "node": lambda s, r: r.node,
    "instance": lambda s, r: r.instance,
    "entry": _entry,
    "events": lambda s, r: events_as_dicts(s),
}

# SPEC §5 aliases → canonical names.
ALIASES: dict[str, str] = {
    "start": "start_time_unix_nano",
    "end": "end_time_unix_nano",
    "duration": "duration_nano",
    "step": "name",
    "span": "name",
    "span_name": "name",
    "service": "service_name",
    "code": "status_code",
    "result": "status",
    "error": "status_message",
    "attrs": "attributes",
    "traceId": "trace_id",
    "spanId": "span_id",
    "parentSpanId": "parent_span_id",
    "parent_id": "parent_span_id",
    "durationMs": "duration_ms",
    "costMs": "duration_ms",
    "startMs": "start_ms",
    "endMs": "end_ms",
}

FIELD_NAMES: frozenset[str] = frozenset(_GETTERS) | frozenset(ALIASES) | {"flag"}
FIELD_HELP = "a field name (" + ", ".join(sorted(FIELD_NAMES, key=str.lower)) + ") or attributes.<key>"


def canonical_name(name: str) -> str:
    return ALIASES.get(name, name)


def field_getter(name: str, flag: str = "") -> Getter | None:
    """The getter for a field name or alias, ``attributes.<key>``/``attrs.<key>`` or
    ``resource.<key>``; ``None`` when the name is unknown."""
    if name == "flag":
        return lambda s, r: flag
    head, dot, key = name.partition(".")
    if dot and key:
        if head in ("attributes", "attrs"):
            return lambda s, r: s.attributes.get(key)
        if head == "resource":
            return lambda s, r: r.attributes.get(key)
        return None
    return _GETTERS.get(canonical_name(name))


def span_record(s: Span, r: ResourceView, flag: str = "") -> dict[str, Any]:
    """The stable schema record of one finished span (``DEFAULT_FIELDS`` order),
    plus ``events`` when the span has some and ``flag`` when the connection sets one."""
    off = _span._clock_offset_ns
    t0 = s._t0
    start = t0 + off
    end = s._t1 + off
    attrs = s.attributes
    pid = s._pid
    status = s._status or _OK
    record = {
        "trace_id": "%032x" % s._tid,
        "span_id": "%016x" % s._sid,
        "parent_span_id": "%016x" % pid if pid else "",
        "name": s.name,
        "kind": s.kind,
        "service_name": attrs.get("service") or r.service_name,
        "target": attrs.get("target", ""),
        "status": status[0],
        "status_code": status[1],
        "status_message": status[2],
        "start_time_unix_nano": start,
        "end_time_unix_nano": end,
        "duration_ms": (s._t1 - t0) / 1e6,
        "start_ms": start // 1_000_000,
        "end_ms": end // 1_000_000,
        "timestamp": rfc3339(start),
        "attributes": attrs,
        "resource": r.attributes,
        "project": r.project,
        "profile": r.profile,
        "node": r.node,
    }
    if s._events:
        record["events"] = events_as_dicts(s)
    if flag:
        record["flag"] = flag
    return record


class StableJSONLine:
    """``span_record`` + ``encode_json`` for the stable schema, built as one f-string:
    about 20% cheaper per span. Names are low-cardinality, so their JSON form is
    cached; the resource, project, profile and node are serialised once."""

    __slots__ = ("_last_trace", "_names", "_resource", "_service", "_tail")

    def __init__(self, resource: ResourceView, flag: str = "") -> None:
        self._resource = resource
        tail = (
            f',"resource":{_js(resource.attributes)},"project":{_js(resource.project)}'
            f',"profile":{_js(resource.profile)},"node":{_js(resource.node)}'
        )
        self._tail = tail + (f',"flag":{_js(flag)}' if flag else "")
        self._names: dict[str, str] = {}
        self._service = _js(resource.service_name)
        self._last_trace: tuple[int, str] = (0, "")  # spans of one trace arrive together

    def _cache(self, text: str) -> str:
        """The JSON form of a low-cardinality string (span name, route), remembered."""
        if len(self._names) > 10_000:  # bounded, whatever the app names its spans
            self._names.clear()
        encoded = self._names[text] = _js(text)
        return encoded

    def __call__(self, s: Span) -> str:
        global _utc_text_cache
        off = _span._clock_offset_ns
        t0 = s._t0
        t1 = s._t1
        # Unix-ns values have 19 digits: the ms and µs parts are slices of their text,
        # cheaper than big-int division (these are 3-digit ints for CPython).
        start = str(t0 + off)
        end = str(t1 + off)
        attrs = s.attributes
        names = self._names
        name_json = names.get(s.name) or self._cache(s.name)
        seconds = start[:-9]
        cached = _utc_text_cache
        if cached[0] != seconds:
            cached = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(seconds))))
            _utc_text_cache = cached
        pid = s._pid
        st = s._status
        if st is None:
            status = '"status":"ok","status_code":0,"status_message":""'
        else:
            status = f'"status":"{st[0]}","status_code":{int(st[1])},"status_message":{_js(st[2])}'
        service = attrs.get("service")
        if service:
            service_json = names.get(service) or self._cache(service) if service.__class__ is str else _js(service)
        else:
            service_json = self._service
        target = attrs.get("target")
        if target is None:
            target_json = _EMPTY
        else:  # routes and view paths: few distinct values, so cached like names
            target_json = names.get(target) or self._cache(target) if target.__class__ is str else _js(target)
        tid = s._tid
        last = self._last_trace
        if last[0] != tid:
            last = self._last_trace = (tid, "%032x" % tid)
        line = (
            f'{{"trace_id":"{last[1]}","span_id":"{"%016x" % s._sid}",'
            f'"parent_span_id":"{"%016x" % pid if pid else ""}","name":{name_json},"kind":"{s.kind}",'
            f'"service_name":{service_json},"target":{target_json},{status},'
            f'"start_time_unix_nano":{start},"end_time_unix_nano":{end},"duration_ms":{(t1 - t0) / 1e6!r},'
            f'"start_ms":{start[:-6]},"end_ms":{end[:-6]},'
            f'"timestamp":"{cached[1]}.{start[-9:-3]}Z",'
            f'"attributes":{encode_json(attrs).decode("utf-8")}{self._tail}'
        )
        if s._events:
            line += f',"events":{encode_json(events_as_dicts(s)).decode("utf-8")}}}'
        else:
            line += "}"
        return line


_utc_text_cache: tuple[str, str] = ("", "")
_EMPTY = '""'


class PyStableLines:
    """The stable schema's lines in pure Python: ``StableJSONLine`` per span."""

    __slots__ = ("line",)

    def __init__(self, resource: ResourceView, flag: str = "") -> None:
        self.line: Callable[[Span], str] = StableJSONLine(resource, flag)

    def chunk(self, spans: Sequence[Span], start: int, stop: int) -> bytes:
        """The lines of ``spans[start:stop]``, each followed by a newline, as UTF-8."""
        line = self.line
        return ("\n".join([line(s) for s in spans[start:stop]]) + "\n").encode("utf-8", "replace")


class CStableLines:
    """The same lines from the C encoder (``infratrace._speedups.StableLines``), which
    hands the spans it does not handle (events, nested attribute values, ...) to
    ``StableJSONLine``: byte for byte the lines of ``PyStableLines``."""

    __slots__ = ("_c", "python")

    def __init__(self, resource: ResourceView, flag: str = "") -> None:
        self.python = StableJSONLine(resource, flag)
        self._c: Any = _speedups.StableLines(self.python._tail, self.python._service, self.python)

    def line(self, s: Span) -> str:
        """One line, without its newline."""
        return self._c.line(s, _span._clock_offset_ns)  # type: ignore[no-any-return]

    def chunk(self, spans: Sequence[Span], start: int, stop: int) -> bytes:
        """The lines of ``spans[start:stop]``, each followed by a newline, as UTF-8."""
        return self._c.chunk(spans, start, stop, _span._clock_offset_ns)  # type: ignore[no-any-return]


def speedups_enabled() -> bool:
    """The C encoder is built and ``INFRATRACE_PURE_PYTHON`` is unset (or ``0``)."""
    return _speedups is not None and hasattr(_speedups, "StableLines") and not _span.pure_python_requested()


def stable_line_encoder(resource: ResourceView, flag: str = "") -> PyStableLines | CStableLines:
    """The fastest stable-schema encoder available: ``line(span) -> str`` and
    ``chunk(spans, start, stop) -> bytes``."""
    if speedups_enabled():
        try:
            return CStableLines(resource, flag)
        except (TypeError, ValueError):  # pragma: no cover - e.g. a tail it cannot hold
            pass
    return PyStableLines(resource, flag)


def _js(value: Any) -> str:
    return encode_json(value).decode("utf-8")


class RecordShape:
    """The ``fields`` of a connection: ``None`` → the stable schema; a list → exactly
    those fields, keyed by the names given; a table → the stable schema with the
    listed fields renamed (and any non-default field listed there added)."""

    __slots__ = ("_flag", "_plan", "_renamed")

    def __init__(self, fields: Sequence[str] | Mapping[str, str] | None, flag: str = "") -> None:
        self._flag = flag
        self._plan: list[tuple[str, Getter]] | None = None
        self._renamed: dict[str, str] | None = None
        if fields is None:
            return
        if isinstance(fields, Mapping):
            renames = {canonical_name(src): dst for src, dst in fields.items()}
            plan: list[tuple[str, Getter]] = []
            for name in DEFAULT_FIELDS:
                plan.append((renames.pop(name, name), _GETTERS[name]))
            for src, dst in renames.items():
                getter = field_getter(src, flag)
                if getter is not None:
                    plan.append((dst, getter))
            self._plan = plan
        else:
            self._plan = []
            for name in fields:
                getter = field_getter(name, flag)
                if getter is not None:
                    self._plan.append((name, getter))

    @property
    def keys(self) -> list[str]:
        """The output keys, in order (the stable schema when ``fields`` is unset)."""
        if self._plan is None:
            return list(DEFAULT_FIELDS)
        return [key for key, _ in self._plan]

    def __call__(self, s: Span, r: ResourceView) -> dict[str, Any]:
        if self._plan is None:
            return span_record(s, r, self._flag)
        return {key: getter(s, r) for key, getter in self._plan}


_PLACEHOLDER = re.compile(r"%([A-Za-z_][A-Za-z0-9_.\-]*)%")


def format_placeholders(template: str) -> list[str]:
    return _PLACEHOLDER.findall(template)


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, (dict, list)):
        return encode_json(value).decode("utf-8")
    if value is None:
        return ""
    return str(value)


class LineFormat:
    """A ``format`` template such as ``"%time% [%status%] %name% cost=%costMs%ms"``.

    Unknown placeholders are rejected by the config loader; text between
    placeholders is kept as it is."""

    __slots__ = ("_parts",)

    def __init__(self, template: str, flag: str = "") -> None:
        parts: list[str | Getter] = []
        pos = 0
        for match in _PLACEHOLDER.finditer(template):
            getter = field_getter(match.group(1), flag)
            if getter is None:
                continue
            if match.start() > pos:
                parts.append(template[pos : match.start()])
            parts.append(getter)
            pos = match.end()
        if pos < len(template):
            parts.append(template[pos:])
        self._parts = parts

    def __call__(self, s: Span, r: ResourceView) -> str:
        return "".join(p if isinstance(p, str) else _render(p(s, r)) for p in self._parts)


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


if _orjson is not None:
    _dumps = _orjson.dumps

    def encode_json(value: Any) -> bytes:
        """Compact UTF-8 JSON; values JSON cannot hold are written as their ``str()``."""
        try:
            return _dumps(value, default=_json_default)  # type: ignore[no-any-return]
        except TypeError:  # e.g. an int beyond 64 bits: the slower encoder copes
            return _stdlib_json(value)

else:  # pragma: no cover

    def encode_json(value: Any) -> bytes:
        """Compact UTF-8 JSON; values JSON cannot hold are written as their ``str()``."""
        return _stdlib_json(value)


def _stdlib_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default, skipkeys=True).encode(
        "utf-8", "replace"
    )
