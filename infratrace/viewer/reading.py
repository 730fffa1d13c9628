"""Span files in, :class:`~.model.Span` records out.

What is read: the JSON lines of the file driver (docs/schema.md) — the live file, its
rotated parts (``traces.20261127T092523.123456.jsonl``, gzipped as ``….jsonl.gz`` with
``compress = true``), a directory of them, or stdin (``-``). A gzipped file is known by
its first bytes, whatever its name. Lines written with ``fields`` renames are read
with a :class:`FieldMap` made from the configuration that wrote them; without one, the
schema's names and their documented aliases (``traceId``, ``costMs``…) are understood.

:class:`Watch` follows its inputs as they grow: each file is read from where the last
poll stopped, only whole lines are taken, and a file that rotates (renamed away, a new
one created under its name) is read to its end through the handle already open before
the new file is opened, so no line is lost or read twice across a rotation.
"""

from __future__ import annotations

import calendar
import gzip
import io
import os
import sys
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from .._fields import ALIASES, DEFAULT_FIELDS, canonical_name
from . import ViewerError
from .model import Span

__all__ = ["FieldMap", "FileReport", "Watch", "expand_inputs", "read_spans", "record_to_span", "rotated_parts"]

GZIP_MAGIC = b"\x1f\x8b"
TRACE_SUFFIXES = (".jsonl", ".json", ".ndjson", ".log", ".txt")
KINDS = ("internal", "server", "client", "producer", "consumer")
_CHUNK = 1 << 20
_decode = msgspec.json.Decoder().decode


# -- field names ---------------------------------------------------------------------------

# Every canonical field the viewer uses, and the other names the schema gives it.
_VIEWER_FIELDS = (
    *DEFAULT_FIELDS,
    "duration_nano",
    "time",
    "ts",
    "events",
    "role",
    "instance",
    "entry",
    "flag",
)


class FieldMap:
    """JSON key → the schema's field name. Knows the schema's names and aliases;
    :meth:`from_config` adds the names a configuration's ``fields`` gave."""

    def __init__(self, renames: Mapping[str, str] | None = None) -> None:
        self.keys: dict[str, str] = {name: name for name in _VIEWER_FIELDS}
        for alias, name in ALIASES.items():
            self.keys.setdefault(alias, name)
        self.renamed: dict[str, str] = dict(renames or {})
        self.keys.update(self.renamed)

    @classmethod
    def from_config(cls, source: str, connection: str = "") -> FieldMap:
        """The names a configuration's JSON connections write: ``fields = { old =
        "new" }`` renames and ``fields = [...]`` selections. ``connection`` picks one
        connection; without it, every JSON connection's names are merged, and two
        connections that give one key different meanings are an error."""
        from .._config import load_config
        from .._errors import ConfigError

        try:
            config = load_config(source)
        except ConfigError as exc:
            raise ViewerError(f"--config: {exc}") from None
        connections = [c for c in config.connections if not connection or c.name == connection]
        if connection and not connections:
            names = ", ".join(c.name for c in config.connections) or "none"
            raise ViewerError(f"--connection {connection!r}: {config.source} has no such connection; it has: {names}")
        readable = [c for c in connections if c.json]
        if not readable:
            which = f"connection {connection!r}" if connection else "no connection"
            raise ViewerError(
                f"--config {config.source}: {which} writes JSON lines (json = true); the viewer reads JSON lines only"
            )
        renames: dict[str, str] = {}
        owner: dict[str, str] = {}
        for conn in readable:
            fields = conn.fields
            if fields is None:
                pairs: Iterable[tuple[str, str]] = ()
            elif isinstance(fields, Mapping):
                pairs = ((dst, canonical_name(src)) for src, dst in fields.items())
            else:
                pairs = ((name, canonical_name(name)) for name in fields)
            for key, name in pairs:
                if renames.get(key, name) != name:
                    raise ViewerError(
                        f"--config {config.source}: connections {owner[key]!r} and {conn.name!r} both write the key "
                        f"{key!r} with different meanings; pick one with --connection"
                    )
                renames[key] = name
                owner[key] = conn.name
        return cls(renames)


# -- one record -----------------------------------------------------------------------------


def record_to_span(record: Mapping[str, Any], fields: FieldMap, origin: str = "") -> Span | None:
    """The span a JSON record holds, or ``None`` when it has no trace and span id."""
    keys = fields.keys
    values: Mapping[str, Any] = {}
    attributes: dict[str, Any] = {}
    resource: dict[str, Any] = {}
    if not fields.renamed and "start_time_unix_nano" in record and "attributes" in record:
        values = record  # the stable schema (the common case): its names are the fields'
    else:
        values = _fields_of(record, keys, attributes, resource)
    return _span_of(values, attributes, resource, origin)


def _fields_of(
    record: Mapping[str, Any], keys: Mapping[str, str], attributes: dict[str, Any], resource: dict[str, Any]
) -> dict[str, Any]:
    """The record's values by field name; ``attributes.<key>`` and ``resource.<key>``
    into ``attributes`` and ``resource``."""
    values: dict[str, Any] = {}
    for key, value in record.items():
        name = keys.get(key)
        if name is None:
            head, dot, rest = key.partition(".")
            if dot and rest and head in ("attributes", "attrs"):
                attributes[rest] = value
            elif dot and rest and head == "resource":
                resource[rest] = value
            continue
        if key == name or name not in values:  # the schema's own name wins over an alias
            values[name] = value
    return values


def _span_of(values: Mapping[str, Any], attributes: dict[str, Any], resource: dict[str, Any], origin: str) -> Span | None:
    trace_id, span_id = values.get("trace_id"), values.get("span_id")
    if not isinstance(trace_id, str) or not trace_id or not isinstance(span_id, str) or not span_id:
        return None
    attrs = values.get("attributes")
    if isinstance(attrs, str):  # a format line's JSON text, selected into a JSON record
        attrs = _json_object(attrs)
    attributes = {**attrs, **attributes} if isinstance(attrs, dict) else attributes
    res = values.get("resource")
    if isinstance(res, str):
        res = _json_object(res)
    resource = {**res, **resource} if isinstance(res, dict) else resource
    start = _whole(values.get("start_time_unix_nano"))
    if start is None:
        start_ms = _number(values.get("start_ms"))
        start = int(start_ms * 1_000_000) if start_ms is not None else None
    if start is None:
        start = _utc_ns(values.get("timestamp"))
    if start is None:
        start = _local_ns(values.get("ts")) or _local_ns(values.get("time"))
    end = _whole(values.get("end_time_unix_nano"))
    if end is None:
        end_ms = _number(values.get("end_ms"))
        end = int(end_ms * 1_000_000) if end_ms is not None else None
    duration_ms = _number(values.get("duration_ms"))
    if duration_ms is None:
        duration_ns = _whole(values.get("duration_nano"))
        duration_ms = duration_ns / 1e6 if duration_ns is not None else None
    if start is None:
        start = 0
    if end is None:
        end = start + round((duration_ms or 0.0) * 1e6)
    end = max(end, start)
    if duration_ms is None:
        duration_ms = (end - start) / 1e6
    service = values.get("service_name")
    if not isinstance(service, str) or not service:
        service = attributes.get("service") or resource.get("service.name") or ""
    kind = values.get("kind")
    status_code = _whole(values.get("status_code"))
    events = values.get("events")
    return Span(
        trace_id=trace_id.strip(),
        span_id=span_id.strip(),
        parent_id=_text(values.get("parent_span_id")).strip(),
        name=_text(values.get("name")),
        kind=kind if isinstance(kind, str) and kind in KINDS else "internal",
        service=str(service),
        status="error" if values.get("status") == "error" else "ok",
        status_code=status_code if status_code is not None else 0,
        status_message=_text(values.get("status_message")),
        start_ns=start,
        end_ns=end,
        duration_ms=float(duration_ms),
        attributes=attributes,
        resource=resource,
        events=[e for e in events if isinstance(e, dict)] if isinstance(events, list) else [],
        origin=origin,
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _whole(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and abs(value) < 1e19:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return float(value)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = _decode(text)
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, dict) else None


def _utc_ns(value: Any) -> int | None:
    """``2026-11-27T09:25:23.123456Z`` → Unix ns."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return _local_ns(value)
    utc = moment.utctimetuple()
    return calendar.timegm(utc) * 1_000_000_000 + moment.microsecond * 1000


def _local_ns(value: Any) -> int | None:
    """``2026-11-27 10:25:23.123`` (local time) → Unix ns."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        return _utc_ns(value)
    return int(time.mktime(moment.timetuple())) * 1_000_000_000 + moment.microsecond * 1000


# -- files ----------------------------------------------------------------------------------


@dataclass
class FileReport:
    """What one input held: for the notes on skipped lines and the error on a file
    without spans."""

    name: str
    lines: int = 0
    spans: int = 0
    not_json: int = 0  # lines that are not a JSON object
    not_span: int = 0  # JSON objects without a trace and span id
    first_problem: tuple[int, str] | None = None  # (line number, the line's start)
    keys: list[str] = field(default_factory=list)  # of the first JSON object without ids
    broken: str = ""  # a read error part-way (a truncated gzip file)
    explicit: bool = True  # named on the command line (not found in a directory)

    @property
    def skipped(self) -> int:
        return self.not_json + self.not_span

    def add(self, number: int, line: bytes, fields: FieldMap, out: list[Span]) -> None:
        """Read one line (without its newline)."""
        if not line.strip():
            return
        self.lines += 1
        try:
            record = _decode(line)
        except msgspec.DecodeError:
            record = None
        if not isinstance(record, dict):
            self.not_json += 1
            self._problem(number, line)
            return
        span = record_to_span(record, fields, f"{self.name}:{number}" if number else self.name)
        if span is None:
            self.not_span += 1
            if not self.keys:
                self.keys = [str(k) for k in list(record)[:8]]
            self._problem(number, line)
            return
        self.spans += 1
        out.append(span)

    def _problem(self, number: int, line: bytes) -> None:
        if self.first_problem is None:
            self.first_problem = (number, _excerpt(line))

    def no_spans_error(self) -> ViewerError:
        """The one-line error for a file that holds lines but no span."""
        where = f"line {self.first_problem[0]}" if self.first_problem and self.first_problem[0] else "its first line"
        if self.not_span and not self.not_json:
            keys = ", ".join(self.keys)
            return ViewerError(
                f"{self.name}: no spans: {self.not_span} JSON record(s) without trace_id and span_id (keys: {keys}); "
                "for a file written with `fields` renames, give its configuration with --config"
            )
        sample = self.first_problem[1] if self.first_problem else ""
        return ViewerError(f"{self.name}: not a JSON-lines span file: {where} is not a JSON object: {sample}")

    def note(self) -> str:
        """A warning for a file with spans and some lines that are not spans."""
        parts = []
        if self.skipped:
            first = self.first_problem
            at = f" (first at line {first[0]}: {first[1]})" if first and first[0] else ""
            parts.append(f"{self.skipped} line(s) skipped, not span records{at}")
        if self.broken:
            parts.append(self.broken)
        return f"{self.name}: " + "; ".join(parts) if parts else ""


def _excerpt(line: bytes) -> str:
    """The start of a bad line for a message: quoted text, or "binary data"."""
    try:
        text = line[:200].decode("utf-8")
    except UnicodeDecodeError:
        if len(line) <= 200:
            return "binary data"
        text = line[:200].decode("utf-8", "ignore")
    if any((ord(c) < 32 and c != "\t") or 0x7F <= ord(c) < 0xA0 for c in text):
        return "binary data"
    return repr(text[:50] + ("…" if len(text) > 50 else ""))


def rotated_parts(path: Path) -> list[Path]:
    """The rotated files of the file driver's ``path`` beside it (``stem.<label>suffix``,
    gzipped or not), oldest first."""
    stem, suffix = path.stem, path.suffix
    found = []
    for candidate in path.parent.glob(f"{_glob_escape(stem)}.*"):
        name = candidate.name
        if candidate == path or name.endswith(".part") or not candidate.is_file():
            continue
        base = name[:-3] if name.endswith(".gz") else name
        if suffix and not base.endswith(suffix):
            continue
        found.append(candidate)
    return sorted(found, key=_mtime_then_name)


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)


def _mtime_then_name(path: Path) -> tuple[float, str]:
    try:
        return (path.stat().st_mtime, path.name)
    except OSError:
        return (0.0, path.name)


def directory_files(directory: Path) -> list[Path]:
    """The trace files of a directory: ``*.jsonl``, ``*.json``, ``*.ndjson``, ``*.log``,
    ``*.txt`` and their ``.gz``, not hidden and not half-written (``.part``); oldest first."""
    found = []
    try:
        entries = list(directory.iterdir())
    except OSError as exc:
        raise ViewerError(f"{directory}: cannot be read: {exc.strerror or exc}") from None
    for entry in entries:
        name = entry.name
        if name.startswith(".") or name.endswith(".part"):
            continue
        base = name[:-3] if name.endswith(".gz") else name
        if base.endswith(TRACE_SUFFIXES) and entry.is_file():
            found.append(entry)
    return sorted(found, key=_mtime_then_name)


def expand_inputs(inputs: Sequence[str], rotated: bool = False) -> list[tuple[str, bool]]:
    """The files to read for command-line ``inputs``: ``(path or "-", named)`` —
    ``named`` is false for a file found in a directory or as a rotated part. Raises
    :class:`ViewerError` for an input that does not exist or a directory without
    trace files."""
    out: list[tuple[str, bool]] = []
    seen: set[str] = set()

    def add(name: str, named: bool) -> None:
        if name not in seen:
            seen.add(name)
            out.append((name, named))

    for item in inputs:
        if item == "-":
            add("-", True)
            continue
        path = Path(item)
        try:
            is_dir = path.is_dir()
            exists = is_dir or path.exists()
        except (OSError, ValueError):
            exists = is_dir = False
        if not exists:
            raise ViewerError(f"{item}: no such file or directory")
        if is_dir:
            files = directory_files(path)
            if not files:
                raise ViewerError(f"{item}: no trace files in this directory ({', '.join('*' + s for s in TRACE_SUFFIXES)}, .gz)")
            for file in files:
                add(str(file), False)
            continue
        if rotated:
            for part in rotated_parts(path):
                add(str(part), False)
        add(item, True)
    return out


def _open_binary(name: str) -> io.BufferedReader:
    try:
        return open(name, "rb")
    except IsADirectoryError:
        raise ViewerError(f"{name}: is a directory") from None
    except OSError as exc:
        raise ViewerError(f"{name}: cannot be read: {exc.strerror or exc}") from None


def _lines(stream: io.BufferedReader) -> Iterator[tuple[bytes, bool]]:
    """``(line without its newline, complete)`` for each line of a binary stream,
    gzipped or not."""
    source: Iterable[bytes] = gzip.GzipFile(fileobj=stream, mode="rb") if stream.peek(2)[:2] == GZIP_MAGIC else stream
    for line in source:
        if line.endswith(b"\n"):
            yield line[:-1].rstrip(b"\r"), True
        else:
            yield line, False


def read_spans(inputs: Sequence[str], fields: FieldMap | None = None, *, rotated: bool = False) -> tuple[list[Span], list[str]]:
    """Every span in ``inputs`` (files, directories, ``-``) and the notes on lines that
    were skipped. Raises :class:`ViewerError` for an input that cannot be read, or
    that is named and holds lines but no span."""
    fields = fields or FieldMap()
    spans: list[Span] = []
    notes: list[str] = []
    for name, named in expand_inputs(inputs, rotated):
        report = FileReport("<stdin>" if name == "-" else name, explicit=named)
        stream = _stdin() if name == "-" else _open_binary(name)
        try:
            _read_stream(stream, report, fields, spans)
        finally:
            if name != "-":
                stream.close()
        if not report.spans and report.lines:
            if named:
                raise report.no_spans_error()
            notes.append(f"{report.name}: skipped, no spans in it")
        elif report.note():
            notes.append(report.note())
    return spans, notes


def _stdin() -> io.BufferedReader:
    stream = sys.stdin.buffer
    return stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(stream)  # type: ignore[arg-type]


def _read_stream(stream: io.BufferedReader, report: FileReport, fields: FieldMap, out: list[Span]) -> None:
    number = 0
    try:
        for line, complete in _lines(stream):
            number += 1
            if not complete:  # the last line, maybe still being written: skipped quietly then
                if _decodes(line) or not report.lines:
                    report.add(number, line, fields, out)
                break
            report.add(number, line, fields, out)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        report.broken = f"read stopped at line {number + 1}: {exc or type(exc).__name__}"
        if not report.spans and not report.lines:
            raise ViewerError(f"{report.name}: cannot be read: {report.broken}") from None


def _decodes(line: bytes) -> bool:
    try:
        _decode(line)
    except msgspec.DecodeError:
        return False
    return True


# -- following ------------------------------------------------------------------------------


class Follower:
    """The whole lines appended to one path, poll after poll, across rotations.

    A plain file is read from its start (or ``tail_bytes`` before its end); a gzipped
    one (a rotated part) is read once. When the name starts to point at another file
    (rotated: renamed away, a new one created) the old file is read to its end through
    the handle kept open, then the rotated parts that appeared since and are not that
    file (when it rotated more than once between two polls), then the new file from
    its start; a file that shrank (truncated) is read again from its start. A line
    may so be read twice (a part read through the handle and again once gzipped):
    readers keep one span per trace and span id."""

    def __init__(self, path: Path, *, tail_bytes: int | None = None) -> None:
        self.path = path
        self.tail_bytes = tail_bytes
        self.identity: tuple[int, int] | None = None  # (device, inode) of the open file
        self.seen: set[tuple[int, int]] = set()  # every file read under this name
        self.number = 0  # lines read from the open file; 0 when unknown (started mid-file)
        self._file: io.BufferedReader | None = None
        self._partial = b""
        self._gzip_done = False
        self._counting = True
        self._parts: set[Path] | None = None  # rotated parts known when it was first opened

    def poll(self) -> list[tuple[int, bytes]]:
        """The lines completed since the last poll: ``(line number or 0, line)``."""
        out: list[tuple[int, bytes]] = []
        if self._gzip_done:
            return out
        if self._file is None and not self._open():
            return out
        self._drain(out)
        try:
            st = os.stat(self.path)
            current: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            st, current = None, None
        if current != self.identity:
            self._drain(out, final=True)
            self._close()
            self._read_new_parts(out)
            if current is not None and self._open(rotated=True):
                self._drain(out)
        elif st is not None and self._file is not None and st.st_size < self._file.tell():
            self._file.seek(0)  # truncated in place
            self._partial = b""
            self.number = 0
            self._drain(out)
        return out

    @property
    def unfinished(self) -> bytes:
        """What was read after the last newline: a line still being written, or the
        whole of a file that has none."""
        return self._partial

    def close(self) -> None:
        self._close()

    def _read_new_parts(self, out: list[tuple[int, bytes]]) -> None:
        known = self._parts if self._parts is not None else set()
        for part in rotated_parts(self.path):
            if part in known:
                continue
            known.add(part)
            try:
                st = part.stat()
                if (st.st_dev, st.st_ino) in self.seen:
                    continue  # the file just read through the handle, renamed
                with open(part, "rb") as handle:
                    for line, _ in _lines(handle):
                        if line.strip():
                            out.append((0, line))
            except (OSError, EOFError, zlib.error):
                continue  # gone (pruned by maxfiles) or unreadable: what was read stays
        self._parts = known

    def _open(self, rotated: bool = False) -> bool:
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - kept open between polls
        except OSError:
            return False
        st = os.fstat(handle.fileno())
        self.identity = (st.st_dev, st.st_ino)
        self.seen.add(self.identity)
        if self._parts is None:
            self._parts = set(rotated_parts(self.path))
        self._partial = b""
        self.number = 0
        self._counting = True
        if handle.peek(2)[:2] == GZIP_MAGIC:
            self._file = handle
            return True
        if not rotated and self.tail_bytes is not None and st.st_size > self.tail_bytes:
            handle.seek(st.st_size - self.tail_bytes - 1)
            if handle.read(1) != b"\n":
                handle.readline()  # the rest of a line cut in the middle
            self._counting = False
        self._file = handle
        return True

    def _drain(self, out: list[tuple[int, bytes]], final: bool = False) -> None:
        handle = self._file
        if handle is None:
            return
        if handle.peek(2)[:2] == GZIP_MAGIC and handle.tell() == 0:
            try:
                with gzip.GzipFile(fileobj=handle, mode="rb") as unzipped:
                    data = unzipped.read()
            except (OSError, EOFError, zlib.error):
                handle.seek(0)  # not whole yet: tried again at the next poll
                return
            self._gzip_done = True
            self._emit(data + b"\n", out)
            return
        while True:
            block = handle.read(_CHUNK)
            if not block:
                break
            self._emit(block, out)
        if final and self._partial:  # the last line of a file no one writes any more
            self._emit(b"\n", out)

    def _emit(self, block: bytes, out: list[tuple[int, bytes]]) -> None:
        data = self._partial + block
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self.number += 1
            if line.strip():
                out.append((self.number if self._counting else 0, line.rstrip(b"\r")))

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Watch:
    """Inputs followed as they grow: named files (and, with ``rotated``, their rotated
    parts, read once) and directories (listed again at each poll: a new file in one is
    read too). A file found in a directory under another name than the one it was read
    as — the live file of a connection, renamed by its rotation — is not read twice."""

    def __init__(
        self,
        inputs: Sequence[str],
        fields: FieldMap | None = None,
        *,
        rotated: bool = False,
        tail_bytes: int | None = None,
    ) -> None:
        if "-" in inputs:
            raise ViewerError("-: stdin cannot be followed; give file or directory names")
        self.fields = fields or FieldMap()
        self.tail_bytes = tail_bytes
        self.directories: list[Path] = []
        self.followers: dict[Path, Follower] = {}
        self.reports: dict[Path, FileReport] = {}
        self.ignored: set[Path] = set()
        for name, named in expand_inputs(inputs, rotated):
            path = Path(name)
            self._follow(path, named)
        self.directories = [Path(item) for item in inputs if Path(item).is_dir()]
        self._first = True

    def _follow(self, path: Path, named: bool) -> None:
        self.followers[path] = Follower(path, tail_bytes=self.tail_bytes if named else None)
        self.reports[path] = FileReport(str(path), explicit=named)

    def poll(self) -> list[Span]:
        """The spans written since the last poll. The first poll raises
        :class:`ViewerError` for a named file that holds lines but no span."""
        spans: list[Span] = []
        for path, follower in list(self.followers.items()):
            report = self.reports[path]
            for number, line in follower.poll():
                report.add(number, line, self.fields, spans)
        for directory in self.directories:
            try:
                files = directory_files(directory)
            except ViewerError:
                continue
            for path in files:
                if path in self.followers or path in self.ignored:
                    continue
                try:
                    st = path.stat()
                except OSError:
                    continue
                if any((st.st_dev, st.st_ino) in f.seen for f in self.followers.values()):
                    self.ignored.add(path)  # a followed file, renamed by its rotation
                    continue
                self._follow(path, False)
                report = self.reports[path]
                for number, line in self.followers[path].poll():
                    report.add(number, line, self.fields, spans)
        if self._first:
            self._first = False
            for path, report in self.reports.items():
                unfinished = self.followers[path].unfinished
                if report.explicit and not report.lines and unfinished.strip() and not _decodes(unfinished):
                    report.add(1, unfinished, self.fields, [])  # a file without a newline: judged by its content
                if report.explicit and report.lines and not report.spans:
                    raise report.no_spans_error()
        return spans

    def notes(self) -> list[str]:
        return [note for report in self.reports.values() if (note := report.note())]

    @property
    def files(self) -> list[str]:
        return [str(path) for path in self.followers]

    def close(self) -> None:
        for follower in self.followers.values():
            follower.close()
