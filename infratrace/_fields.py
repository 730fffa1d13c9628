"""Output shaping: from a :class:`SpanData` to what a connection writes.

A connection's output is a short chain of small steps, each testable alone:

- a *record* step picks the fields: :func:`stable_record` (the stable JSON-lines
  schema, the default), :class:`FieldSelection` (``fields = [...]``) or
  :class:`FieldRenames` (``fields = { old = "new" }``);
- an *encoding* step turns records into lines: JSON lines, or :class:`FormatLine` for a
  ``format`` template (which reads the span itself).

:func:`line_encoder` composes them from a connection's config; every driver that
writes lines (console, file) uses it, and the OTLP and GreptimeDB drivers use the
same field getters (:func:`field_getter`) for their extra attributes and columns.
Everything here runs on the pipeline's background threads, never on ``end()``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from ._json import Raw, encode_json, line_step
from ._spandata import SpanData, safe_str

if TYPE_CHECKING:
    from ._config import ConnectionConfig

__all__ = [
    "DEFAULT_FIELDS",
    "FIELD_NAMES",
    "FieldRenames",
    "FieldSelection",
    "FormatLine",
    "canonical_name",
    "field_getter",
    "json_line",
    "line_encoder",
    "stable_record",
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

ENTRY_KINDS = frozenset({"method", "service", "trigger", "http", "web", "event", "queue", "cron"})

Getter = Callable[[SpanData], Any]
RecordStep = Callable[[SpanData], Any]  # a dict, or a StableRecord

# -- time rendering (cached per second: strftime is the expensive part) -------------
_utc_cache: tuple[int, str] = (-1, "")
_local_cache: tuple[int, str] = (-1, "")


def rfc3339(unix_ns: int) -> str:
    """``2026-11-27T09:25:23.123456Z``"""
    sec = unix_ns // 1_000_000_000
    cached = _utc_cache
    if cached[0] != sec:
        cached = _utc_second(sec)
    # 1_000_000 + the microseconds: six digits after its leading 1, zero-padded
    return cached[1] + str(1_000_000 + unix_ns % 1_000_000_000 // 1000)[1:] + "Z"


def _utc_second(sec: int) -> tuple[int, str]:
    global _utc_cache
    _utc_cache = (sec, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec)))
    return _utc_cache


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
def _entry(s: SpanData) -> str:
    prefix, sep, _ = s.name.partition(":")
    if sep and prefix in ENTRY_KINDS:
        return prefix
    kind = s.attributes.get("kind")
    return kind if isinstance(kind, str) and kind in ENTRY_KINDS else ""


def events_as_dicts(s: SpanData) -> list[dict[str, Any]]:
    return [{"name": e.name, "time_unix_nano": e.time_unix_nano, "attributes": e.attributes} for e in s.events]


_GETTERS: dict[str, Getter] = {
    "trace_id": lambda s: s.trace_id,
    "span_id": lambda s: s.span_id,
    "parent_span_id": lambda s: s.parent_span_id,
    "name": lambda s: s.name,
    "kind": lambda s: s.kind,
    "service_name": lambda s: s.service_name,
    "target": lambda s: s.attributes.get("target", ""),
    "status": lambda s: s.status,
    "status_code": lambda s: s.status_code,
    "status_message": lambda s: s.status_message,
    "start_time_unix_nano": lambda s: s.start_time_unix_nano,
    "end_time_unix_nano": lambda s: s.end_time_unix_nano,
    "duration_ms": lambda s: (s.end_time_unix_nano - s.start_time_unix_nano) / 1e6,
    "duration_nano": lambda s: s.end_time_unix_nano - s.start_time_unix_nano,
    "start_ms": lambda s: s.start_time_unix_nano // 1_000_000,
    "end_ms": lambda s: s.end_time_unix_nano // 1_000_000,
    "timestamp": lambda s: rfc3339(s.start_time_unix_nano),
    "time": lambda s: local_ms(s.start_time_unix_nano),
    "ts": lambda s: local_us(s.start_time_unix_nano),
    "attributes": lambda s: s.attributes,
    "resource": lambda s: s.resource.attributes,
    "project": lambda s: s.resource.project,
    "profile": lambda s: s.resource.profile,
    "role": lambda s: s.resource.role,
    "node": lambda s: s.resource.node,
    "instance": lambda s: s.resource.instance,
    "entry": _entry,
    "events": events_as_dicts,
}

# Aliases (other names ``format`` placeholders and ``fields`` accept) → canonical names.
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
    "durationMs": "duration_ms",
    "costMs": "duration_ms",
    "startMs": "start_ms",
    "endMs": "end_ms",
    "parent_id": "parent_span_id",
}

FIELD_NAMES: frozenset[str] = frozenset(_GETTERS) | frozenset(ALIASES) | {"flag"}
FIELD_HELP = "a field name (" + ", ".join(sorted(FIELD_NAMES, key=str.lower)) + ") or attributes.<key>"


def canonical_name(name: str) -> str:
    return ALIASES.get(name, name)


def field_getter(name: str, flag: str = "") -> Getter | None:
    """The getter for a field name or alias, ``attributes.<key>``/``attrs.<key>`` or
    ``resource.<key>``; ``None`` when the name is unknown."""
    if name == "flag":
        return lambda s: flag
    head, dot, key = name.partition(".")
    if dot and key:
        if head in ("attributes", "attrs"):
            return lambda s: s.attributes.get(key)
        if head == "resource":
            return lambda s: s.resource.attributes.get(key)
        return None
    return _GETTERS.get(canonical_name(name))


# -- record steps --------------------------------------------------------------------
class StableRecord(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """A span in the stable schema: its fields, in this order, are the JSON line's keys
    (``DEFAULT_FIELDS``); ``events`` and ``flag`` appear only when set. A struct, not a
    dict: made in one call, and encoded with its field names encoded once."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    service_name: str
    target: Any
    status: str
    status_code: int
    status_message: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    duration_ms: float
    start_ms: int
    end_ms: int
    timestamp: str
    attributes: dict[str, Any]
    resource: Raw
    project: str
    profile: str
    node: str
    events: list[dict[str, Any]] | None = None
    flag: str = ""


def stable_record(s: SpanData, flag: str = "") -> StableRecord:
    """The stable schema's record of one span, plus ``events`` when the span has some
    and ``flag`` when the connection sets one. The resource is its JSON, encoded once
    per process."""
    name, kind, trace_id, span_id, parent, _, _, start, end, status, code, message, attrs, events, resource = s
    service = attrs.get("service")
    if service.__class__ is not str or not service:  # SpanData.service_name, inlined
        service = resource.service_name if service is None or service == "" else safe_str(service)
    return StableRecord(
        trace_id,
        span_id,
        parent,
        name,
        kind,
        service,
        attrs.get("target", ""),
        status,
        code,
        message,
        start,
        end,
        (end - start) / 1e6,
        start // 1_000_000,
        end // 1_000_000,
        rfc3339(start),
        attrs,
        resource.json,
        resource.project,
        resource.profile,
        resource.node,
        events_as_dicts(s) if events else None,
        flag,
    )


class FieldSelection:
    """``fields = ["trace_id", "name", ...]``: exactly those fields, keyed as given."""

    __slots__ = ("plan",)

    def __init__(self, names: Sequence[str], flag: str = "") -> None:
        self.plan = [(name, getter) for name in names if (getter := field_getter(name, flag)) is not None]

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.plan]

    def __call__(self, s: SpanData) -> dict[str, Any]:
        return {key: getter(s) for key, getter in self.plan}


class FieldRenames(FieldSelection):
    """``fields = { trace_id = "tid" }``: the stable schema with the listed fields
    renamed, and any field listed there that the schema lacks added."""

    __slots__ = ()

    def __init__(self, renames: Mapping[str, str], flag: str = "") -> None:
        wanted = {canonical_name(src): dst for src, dst in renames.items()}
        self.plan = [(wanted.pop(name, name), _GETTERS[name]) for name in DEFAULT_FIELDS]
        self.plan += [(dst, getter) for src, dst in wanted.items() if (getter := field_getter(src, flag)) is not None]


def record_step(fields: Sequence[str] | Mapping[str, str] | None, flag: str = "") -> RecordStep:
    """The record step for a connection's ``fields`` (``None``: the stable schema)."""
    if fields is None:
        return (lambda s: stable_record(s, flag)) if flag else stable_record
    if isinstance(fields, Mapping):
        return FieldRenames(fields, flag)
    return FieldSelection(fields, flag)


# -- encoding steps ------------------------------------------------------------------
def json_line(record: Any) -> str:
    """One JSON line (without its newline)."""
    return encode_json(record).decode("utf-8")


_PLACEHOLDER = re.compile(r"%([A-Za-z_][A-Za-z0-9_.\-]*)%")


def format_placeholders(template: str) -> list[str]:
    return _PLACEHOLDER.findall(template)


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, (dict, list)):
        return json_line(value)
    if value is None:
        return ""
    return str(value)


# Control characters a terminal or a line-based reader would act on, as escapes: C0
# (but tab), DEL, C1, and the Unicode line and paragraph separators.
_CONTROL_ESCAPES: dict[int, str] = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c != 0x09}
_CONTROL_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"})


class FormatLine:
    """A ``format`` template such as ``"%time% [%status%] %name% cost=%costMs%ms"``:
    one text line per span. Unknown placeholders are rejected by the config loader.
    Control characters are escaped (``\\n``, ``\\r``, ``\\x1b``, ``\\u2028``…), so one
    span stays one line and a value cannot move a terminal's cursor or change its
    colours."""

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

    def __call__(self, s: SpanData) -> str:
        return "".join(p if isinstance(p, str) else _render(p(s)) for p in self._parts).translate(_CONTROL_ESCAPES)


def line_encoder(config: ConnectionConfig) -> Callable[[SpanData], bytes]:
    """A connection's whole chain for one span: its line, followed by a newline, as
    UTF-8 (a JSON record, or the ``format`` template's text)."""
    if not config.json:
        template = FormatLine(config.format, config.flag)
        return lambda s: (template(s) + "\n").encode("utf-8", "replace")
    return line_step(record_step(config.fields, config.flag))
