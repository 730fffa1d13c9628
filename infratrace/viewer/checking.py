"""``infratrace check``: a configuration as ``configure()`` would read it.

Every error of the file is listed — the messages ``configure()`` raises, from the one
loader (:func:`infratrace._config.check_config`) — and a valid file is described: each
connection's driver, its settings as resolved (defaults filled in, secrets masked),
its sampling rules in the order they apply, and its field mapping. Checking builds no
driver, so it creates no file or folder and opens no connection; ``--test-write``
does build them and sends one span through each.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

from .._config import (
    DEFAULTS,
    LOCAL_CONFIG,
    TOP_LEVEL_TABLES,
    Config,
    ConfigSource,
    ConnectionConfig,
    SampleConfig,
    _read_document,
    check_config,
)
from .._errors import ConfigError, toml_text
from .._fields import canonical_name
from .._registry import get_driver_factory
from .._settings import DURATION, MASK, SIZE, masked, schema_fields
from .._spandata import Resource, SpanData

__all__ = ["describe", "run_check", "test_write"]

TEST_SPAN_NAME = "infratrace.check"
_SECRET_WORDS = ("pass", "secret", "token", "auth", "key", "credential")


def run_check(source: ConfigSource, out: TextIO, err: TextIO, *, write: bool = False, app_tables: bool = False) -> int:
    """Check ``source`` (``None``: what ``configure()`` reads without an argument);
    describe it on ``out``, or list its errors on ``err``. Returns the exit status:
    0 valid (and, with ``write``, every test write succeeded), 1 otherwise.

    A top-level table or key that is not infratrace's is an error here, with a
    did-you-mean when its name is near one of ours: ``configure()`` ignores them so that
    an application can keep its own tables in the file, but in a file of infratrace's
    own it is a mistake. ``app_tables`` (``--app-tables``: the file is shared with the
    application) makes them notes, as ``configure()`` sees them."""
    config, errors = check_config(source)
    if not app_tables:
        reported = {error.key for error in errors}
        errors = errors + [error for error in _unknown_tables(source) if error.key not in reported]
    if errors or config is None:
        for error in errors:
            err.write(f"invalid: {error}\n")
        if len(errors) > 1:
            err.write(f"{len(errors)} errors\n")
        return 1
    describe(config, out)
    for note in _notes(source):
        out.write(f"note: {note}\n")
    if write:
        out.write("\n")
        return 0 if test_write(config, out) else 1
    return 0


def describe(config: Config, out: TextIO) -> None:
    count = len(config.connections)
    out.write(f"{config.source}: valid, {count} connection{'s' if count != 1 else ''}\n")
    if not config.enabled:
        out.write("  tracing is off: INFRATRACE_DISABLED or OTEL_SDK_DISABLED is set; no span is written\n")
    out.write(f"  resource: {_pairs(config.resource)}\n")
    limits = config.limits
    out.write(
        f"  limits: attributes = {limits.attributes}, value_length = {limits.value_length}, list_items = {limits.list_items}\n"
    )
    out.write(f"  propagators: {', '.join(config.propagators) or 'none'}\n")
    environment = _environment()
    if environment:
        out.write(f"  environment: {_pairs(environment)}\n")
    for conn in config.connections:
        out.write("\n")
        _connection(conn, out)


def _connection(conn: ConnectionConfig, out: TextIO) -> None:
    what = "JSON lines" if conn.json else "format lines"
    if conn.driver in ("otlp", "greptime", "discard"):
        what = {"otlp": "OTLP/HTTP requests", "greptime": "GreptimeDB rows", "discard": "nothing (discarded)"}[conn.driver]
    out.write(f"[{conn.path}] driver = {toml_text(conn.driver)}: {what}\n")
    if not conn.json and conn.driver not in ("otlp", "greptime", "discard"):
        out.write(f"  format = {toml_text(conn.format)}\n")
    if conn.flag:
        out.write(f"  flag = {toml_text(conn.flag)}\n")
    settings = _settings(conn)
    if settings:
        out.write("  setting:\n")
        width = max(len(key) for key, _ in settings)
        for key, text in settings:
            out.write(f"    {key.ljust(width)} = {text}\n")
    overflow = conn.overflow or _driver_overflow(conn.driver)
    default = "" if conn.overflow else " (the driver's default)"
    out.write(
        f"  buffer = {conn.buffer}, timeout = {toml_text(_duration_text(conn.timeout))}, "
        f"overflow = {toml_text(overflow)}{default}\n"
    )
    for line in _sample_lines(conn.sample):
        out.write(f"  {line}\n")
    fields = _fields_line(conn)
    if fields:
        out.write(f"  {fields}\n")


def _settings(conn: ConnectionConfig) -> list[tuple[str, str]]:
    settings = conn.settings
    if settings is None:
        return []
    if isinstance(settings, Mapping):  # a driver without a schema: its table as written
        return [(str(k), MASK if _looks_secret(str(k)) and v else toml_text(v)) for k, v in settings.items()]
    shown = masked(settings)
    defaults = {f.name: f.default for f in dataclasses.fields(settings)}
    lines = []
    for name, spec in schema_fields(type(settings)):
        value = shown[name]
        if value == MASK:
            text = MASK
        elif spec.kind == DURATION and value:
            text = toml_text(_duration_text(value))
        elif spec.kind == SIZE and value:
            text = toml_text(_size_text(value))
        elif spec.kind in (DURATION, SIZE):
            text = "0"
        else:
            text = toml_text(value)
        if spec.note and value == defaults.get(name, dataclasses.MISSING):
            text += f" ({spec.note.replace('`', '')})"
        lines.append((name, text))
    return lines


def _looks_secret(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def _driver_overflow(driver: str) -> str:
    try:
        factory = get_driver_factory(driver)
    except ConfigError:
        return "sample"
    value = getattr(factory, "overflow", "sample")
    return value if isinstance(value, str) else "sample"


def _sample_lines(sample: SampleConfig) -> list[str]:
    if sample == SampleConfig(rate=sample.rate) and not sample.rules:
        keep = "every trace" if sample.rate >= 1.0 else f"rate = {_number(sample.rate)} of the traces"
        return [f"sample: {keep}; a trace with an error is kept whole"]
    slow = toml_text(_duration_text(sample.slow)) if sample.slow else "0 (off)"
    salt = "(set)" if sample.salt else '"" (random per process)'
    lines = [
        "sample:",
        f"  rate = {_number(sample.rate)}, error = {toml_text(sample.error)}, slow = {slow}, "
        f"parent = {toml_text(sample.parent)}, key = {toml_text(sample.key)}, salt = {salt}",
        f"  pending_spans = {sample.pending_spans}, pending_traces = {sample.pending_traces}",
    ]
    if sample.rules:
        what = "each span" if sample.key != "trace_id" else "the local root"
        lines.append(f"  rules, the first that matches {what} decides:")
        for index, rule in enumerate(sample.rules, 1):
            match = f"name = {toml_text(rule.name)}" if rule.name else "any name"
            if rule.attrs:
                match += ", attrs = " + toml_text(dict(rule.attrs))
            lines.append(f"    {index}. {match} → {_number(rule.ratio)}")
        lines.append(f"    otherwise → rate {_number(sample.rate)}")
    return lines


def _fields_line(conn: ConnectionConfig) -> str:
    fields = conn.fields
    if fields is None:
        return "fields: the stable schema (docs/schema.md)" if conn.json else ""
    if isinstance(fields, Mapping):
        renames = ", ".join(f"{src} → {toml_text(dst)}" for src, dst in fields.items())
        return f"fields: {renames}; the other keys as in the stable schema"
    names = ", ".join(name if canonical_name(name) == name else f"{name} (= {canonical_name(name)})" for name in fields)
    return f"fields: only {names}"


def _number(value: float) -> str:
    return toml_text(int(value) if float(value).is_integer() else value)


def _duration_text(seconds: float) -> str:
    """Seconds as the TOML duration a user would write: ``"200ms"``, ``"5s"``, ``"7d"``."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        count = seconds / size
        if seconds >= size and abs(count - round(count)) < 1e-9:
            return f"{round(count)}{unit}"
    millis = seconds * 1000.0
    if abs(millis - round(millis)) < 1e-6:
        return f"{round(millis)}ms"
    return f"{millis:g}ms"


def _size_text(size: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size}B"


def _pairs(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{key} = {toml_text(value)}" for key, value in values.items())


def _environment() -> dict[str, str]:
    """The environment variables configuration reads that are set (header values
    masked: they carry credentials)."""
    found: dict[str, str] = {}
    for name in sorted(os.environ):
        if name == "INFRATRACE_CONFIG" or not name.startswith(("INFRATRACE_", "OTEL_")):
            continue
        found[name] = MASK if "HEADERS" in name else os.environ[name]
    return found


def _unknown_tables(source: ConfigSource) -> list[ConfigError]:
    """The top-level tables and keys of ``source`` that are not infratrace's, as errors."""
    try:
        document, origin = _read_document(source)
    except ConfigError:
        return []
    ours = ", ".join(f"[{name}]" for name in TOP_LEVEL_TABLES)
    errors = []
    for key, value, near in _foreign(document):
        hint = f"did you mean [{near}]? " if near else ""
        what = "table" if isinstance(value, Mapping) else "key"
        expected = f"unknown {what}; {hint}infratrace reads {ours} (--app-tables: the file is shared with the application)"
        errors.append(ConfigError(str(key), value, expected, origin))
    return errors


def _foreign(document: Mapping[str, Any]) -> Iterator[tuple[str, Any, str]]:
    """The top-level keys that are not infratrace's, each with the nearest of ours
    (``""`` when none is near)."""
    for key, value in document.items():
        if key not in TOP_LEVEL_TABLES:
            match = difflib.get_close_matches(str(key).lower(), TOP_LEVEL_TABLES, n=1, cutoff=0.6)
            yield key, value, match[0] if match else ""


def _notes(source: ConfigSource) -> list[str]:
    """The top-level tables that are not infratrace's (the application's own, ignored),
    with a did-you-mean when the name is near one of ours, and a word when no file was
    given."""
    try:
        document, origin = _read_document(source)
    except ConfigError:
        return []
    if origin == DEFAULTS:
        return [f"no configuration given, INFRATRACE_CONFIG is unset and there is no ./{LOCAL_CONFIG}: these are the defaults"]
    notes = []
    for key, value, near in _foreign(document):
        hint = f" (did you mean [{near}]?)" if near else ""
        table = isinstance(value, Mapping)
        notes.append(f"[{key}] is not infratrace's and is ignored{hint}" if table else f"{key} is ignored{hint}")
    return notes


# -- --test-write -------------------------------------------------------------------------


def test_write(config: Config, out: TextIO) -> bool:
    """Build each connection's driver and write one span through it (no sampling, no
    pipeline); report success or the destination's error. True when all succeeded."""
    span = _test_span(config)
    out.write(f"test write: one span {toml_text(TEST_SPAN_NAME)}, trace {span.trace_id}\n")
    good = True
    for conn in config.connections:
        label = f"  [{conn.path}] {conn.driver}"
        try:
            driver = get_driver_factory(conn.driver, f"{conn.path}.driver")(conn)
        except ConfigError as exc:
            out.write(f"{label}: failed: {exc.with_source(config.source)}\n")
            good = False
            continue
        except Exception as exc:
            out.write(f"{label}: failed: the driver could not be built: {type(exc).__name__}: {exc}\n")
            good = False
            continue
        try:
            driver.write([span])
        except Exception as exc:
            out.write(f"{label}: failed: {type(exc).__name__}: {exc}\n")
            good = False
        else:
            where = _destination(driver)
            out.write(f"{label}: ok{f', written to {where}' if where else ''}\n")
        finally:
            try:
                driver.close()
            except Exception as exc:
                out.write(f"{label}: closing failed: {type(exc).__name__}: {exc}\n")
                good = False
    return good


def _test_span(config: Config) -> SpanData:
    resource = Resource({**config.resource, "process.pid": os.getpid()})
    now = time.time_ns()
    return SpanData(
        name=TEST_SPAN_NAME,
        kind="internal",
        trace_id=os.urandom(16).hex(),
        span_id=os.urandom(8).hex(),
        parent_span_id="",
        trace_flags=1,
        tracestate="",
        start_time_unix_nano=now,
        end_time_unix_nano=now + 1000,
        status="ok",
        status_code=0,
        status_message="",
        attributes={"infratrace.check": True},
        events=(),
        resource=resource,
    )


def _destination(driver: object) -> str:
    for attribute in ("path", "endpoint", "url"):
        value = getattr(driver, attribute, None)
        if value:
            return str(value)
    return ""
