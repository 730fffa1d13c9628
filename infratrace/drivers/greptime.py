"""``driver = "greptime"``: spans as rows of a GreptimeDB table.

Two ways in, one row schema:

- ``protocol = "grpc"`` (default): GreptimeDB's gRPC row-insert API through the official
  ``greptimedb-ingester`` package (``pip install 'infratrace[greptime]'``); the database
  creates the table from the column schema on the first write.
- ``protocol = "http"``: GreptimeDB's InfluxDB line-protocol write endpoint
  (``/v1/influxdb/write``), standard library only; also accepted by InfluxDB 1.x at
  ``write_path = "/write"``.

Columns (``fields`` renames or selects them): tags ``project role profile node
service_name span_name step entry``; the nanosecond time index ``timestamp``; int64
fields ``start end duration code``; string fields for the rest, attributes and resource
as JSON text. Decisions are written down in docs/drivers.md.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from .._config import ConnectionConfig
from .._errors import ConfigError, MissingExtraError
from .._fields import FIELD_HELP, canonical_name, field_getter
from .._json import encode_json
from .._settings import choice, duration, flag, settings_for, text, whole
from .._spandata import SpanData
from .._units import DURATION_HELP, parse_duration
from ._http import HttpSender, backoff_delay, basic_auth

__all__ = ["Column", "GreptimeDriver", "GreptimeSettings", "LineProtocolEncoder", "columns_for", "parse_dsn"]

TAG, TIME, INT, FLOAT, STRING = "tag", "time", "int", "float", "string"
PROTOCOLS = ("grpc", "http")
DEFAULT_PORTS = {"grpc": 4001, "http": 4000}
DEFAULT_WRITE_PATH = "/v1/influxdb/write"
_TIME_NAMES = frozenset({"time", "timestamp", "ts"})
_INT_SOURCES = frozenset({"start_time_unix_nano", "end_time_unix_nano", "duration_nano", "status_code", "start_ms", "end_ms"})
_FLOAT_SOURCES = frozenset({"duration_ms"})
_INT64 = (-(2**63), 2**63 - 1)
_DSN_QUERY_KEYS = ("insecure", "tls", "timeout", "protocol")
_FULLWIDTH_BACKSLASH = "\uff3c"

Getter = Callable[[SpanData], Any]


def _start_ns(s: SpanData) -> int:
    return s.start_time_unix_nano


@dataclass(frozen=True)
class Column:
    name: str  # the column name written
    source: str  # the span field it comes from (a ``fields`` name)
    role: str  # tag | time | int | float | string
    getter: Getter


# (column, source field, role), in table order.
DEFAULT_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("project", "project", TAG),
    ("role", "role", TAG),
    ("profile", "profile", TAG),
    ("node", "node", TAG),
    ("service_name", "service_name", TAG),
    ("span_name", "span_name", TAG),
    ("step", "step", TAG),
    ("entry", "entry", TAG),
    ("timestamp", "time", TIME),
    ("start", "start", INT),
    ("end", "end", INT),
    ("duration", "duration", INT),
    ("code", "code", INT),
    ("trace_id", "trace_id", STRING),
    ("span_id", "span_id", STRING),
    ("parent_span_id", "parent_span_id", STRING),
    ("kind", "kind", STRING),
    ("target", "target", STRING),
    ("status", "status", STRING),
    ("error", "error", STRING),
    ("attributes", "attributes", STRING),
    ("resource", "resource", STRING),
)


def _column(name: str, source: str, role: str, flag: str) -> Column:
    if role == TIME:
        return Column(name, source, role, _start_ns)
    getter = field_getter(source, flag)
    if getter is None:  # the config loader has already rejected unknown names
        raise ValueError(f"unknown field {source!r}; expected {FIELD_HELP}")
    return Column(name, source, role, getter)


def _default_for(name: str) -> tuple[str, str, str] | None:
    """The default column a ``fields`` name refers to: by column name, by the time
    index's names, or by the canonical span field behind it."""
    if name in _TIME_NAMES:
        return DEFAULT_COLUMNS[8]
    for column in DEFAULT_COLUMNS:
        if column[0] == name:
            return column
    wanted = canonical_name(name)
    for column in DEFAULT_COLUMNS:
        if column[2] != TAG and canonical_name(column[1]) == wanted:
            return column
    return None


def _role_of(source: str) -> str:
    wanted = canonical_name(source)
    if wanted in _INT_SOURCES:
        return INT
    if wanted in _FLOAT_SOURCES:
        return FLOAT
    return STRING


def columns_for(config: ConnectionConfig) -> list[Column]:
    """The table's columns for a connection: the default set above; a ``fields`` table renames
    columns (and adds the non-default fields it names); a ``fields`` list selects
    columns, in its order. The time index is always there."""
    fields, flag = config.fields, config.flag
    planned: list[tuple[str, str, str]] = []
    if fields is None:
        planned = list(DEFAULT_COLUMNS)
    elif isinstance(fields, Mapping):
        renames: dict[tuple[str, str, str], str] = {}
        extra: list[tuple[str, str, str]] = []
        for src, dst in fields.items():
            default = _default_for(src)
            if default is None:
                extra.append((dst, src, _role_of(src)))
            else:
                renames[default] = dst
        planned = [(renames.get(c, c[0]), c[1], c[2]) for c in DEFAULT_COLUMNS] + extra
    else:
        for name in fields:
            default = _default_for(name)
            planned.append((name, default[1], default[2]) if default else (name, name, _role_of(name)))
        if not any(role == TIME for _, _, role in planned):
            planned.insert(0, DEFAULT_COLUMNS[8])
    if flag and not any(canonical_name(source) == "flag" for _, source, _ in planned):
        planned.append(("flag", "flag", STRING))
    columns: list[Column] = []
    seen: set[str] = set()
    for name, source, role in planned:
        if name in seen:
            continue
        seen.add(name)
        columns.append(_column(name, source, role, flag))
    return columns


def _cell(role: str, value: Any) -> Any:
    """A span value as the column's type: None stays null."""
    if value is None:
        return None
    if role in (INT, TIME):
        return int(value)
    if role == FLOAT:
        return float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list, tuple)):
        return encode_json(value).decode("utf-8")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- line protocol -----------------------------------------------------------------


def _escape_name(text: str, specials: str) -> str:
    """Measurement, tag keys and values, field keys: backslash before ``specials``.

    A backslash that would read as an escape (before a special character, or last)
    cannot be written in line protocol — InfluxDB 1.x keeps ``\\\\`` as two characters
    — so it is written as U+FF3C, the fullwidth reverse solidus. Newlines, which end a line, become ``\\n``."""
    if "\\" in text:
        chars = list(text)
        for i, ch in enumerate(chars):
            if ch == "\\" and (i + 1 == len(chars) or chars[i + 1] in specials or chars[i + 1] in "\r\n"):
                chars[i] = _FULLWIDTH_BACKSLASH
        text = "".join(chars)
    if "\n" in text or "\r" in text:
        text = text.replace("\r", "\\r").replace("\n", "\\n")
    for ch in specials:
        if ch in text:
            text = text.replace(ch, "\\" + ch)
    return text


def escape_measurement(text: str) -> str:
    return _escape_name(text, ", ")


def escape_key(text: str) -> str:
    """A tag key, tag value or field key."""
    return _escape_name(text, ",= ")


def escape_string_field(text: str) -> str:
    """The inside of a double-quoted string field value."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


class LineProtocolEncoder:
    """Spans → InfluxDB line protocol, one line per span, nanosecond timestamps."""

    def __init__(self, table: str, columns: Sequence[Column]) -> None:
        self._measurement = escape_measurement(table)
        self._tags = [(escape_key(c.name), c.getter) for c in columns if c.role == TAG]
        self._fields = [(escape_key(c.name), c.role, c.getter) for c in columns if c.role not in (TAG, TIME)]
        time_columns = [c for c in columns if c.role == TIME]
        self._time: Getter = time_columns[0].getter if time_columns else _start_ns

    def line(self, s: SpanData) -> str:
        parts = [self._measurement]
        for key, getter in self._tags:
            value = _cell(TAG, getter(s))
            if value:  # line protocol has no empty tag values: an absent tag reads as null
                parts.append(f",{key}={escape_key(value)}")
        fields: list[str] = []
        for key, role, getter in self._fields:
            text = _field_text(role, getter(s))
            if text is not None:
                fields.append(f"{key}={text}")
        parts.append(" ")
        parts.append(",".join(fields))
        parts.append(f" {int(self._time(s))}")
        return "".join(parts)

    def encode(self, spans: Iterable[SpanData]) -> bytes:
        return "".join(self.line(s) + "\n" for s in spans).encode("utf-8", "replace")


def _field_text(role: str, value: Any) -> str | None:
    if value is None:
        return None
    if role == INT:
        whole = int(value)
        return f"{whole}i" if _INT64[0] <= whole <= _INT64[1] else None  # no int64: leave it null
    if role == FLOAT:
        number = float(value)
        return repr(number) if math.isfinite(number) else None
    return f'"{escape_string_field(_cell(STRING, value))}"'


# -- settings ----------------------------------------------------------------------


def parse_dsn(dsn: str) -> dict[str, Any]:
    """``greptime://user:pass@host:4001/public/traces?insecure=true&timeout=5s`` (or
    ``http(s)://host:4000``) → the settings it holds; raises ``ValueError``."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("greptime", "grpc", "http", "https"):
        raise ValueError("expected a greptime://, grpc://, http:// or https:// URL")
    out: dict[str, Any] = {}
    out["protocol"] = "http" if parts.scheme in ("http", "https") else "grpc"
    if parts.scheme == "https":
        out["tls"] = True
    if parts.hostname:
        out["host"] = parts.hostname
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port is not a number between 0 and 65535") from None
    if port:
        out["port"] = port
    if parts.username:
        out["username"] = unquote(parts.username)
    if parts.password:
        out["password"] = unquote(parts.password)
    segments = [unquote(p) for p in parts.path.split("/") if p]
    if len(segments) > 2:
        raise ValueError("expected at most /<database>/<table> as the path")
    if segments:
        out["database"] = segments[0]
    if len(segments) > 1:
        out["table"] = segments[1]
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _DSN_QUERY_KEYS:
            raise ValueError(f"unknown query parameter {key!r}; valid: {', '.join(_DSN_QUERY_KEYS)}")
        if key in ("insecure", "tls"):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"{key} must be true or false")
            out[key] = value.lower() in ("true", "1")
        elif key == "timeout":
            try:
                out["timeout"] = parse_duration(value)
            except ValueError:
                raise ValueError(f"timeout must be {DURATION_HELP}") from None
            if out["timeout"] <= 0:
                raise ValueError("timeout must be a positive duration")
        else:
            if value not in PROTOCOLS:
                raise ValueError("protocol must be grpc or http")
            out["protocol"] = value
    return out


@dataclass(frozen=True)
class GreptimeSettings:
    """``[trace.<conn>.setting]`` of ``driver = "greptime"``. After validation every
    field holds the value in effect: the parts of ``url`` fill the keys not set, the
    port follows the protocol, and ``tls`` is true when ``insecure = false``."""

    url: str = text(
        "",
        "`greptime://user:pass@host:4001/<database>/<table>?insecure=true&timeout=5s&tls=false&protocol=grpc`, "
        "or `http(s)://host:4000` for the HTTP protocol; the keys below override its parts",
        aliases=("dsn",),
        secret=True,  # it may hold the password
    )
    protocol: str = choice("grpc", PROTOCOLS, '`"grpc"` or `"http"`', note="`http` for an `http://` or `https://` url")
    host: str = text("127.0.0.1", "the server's host name or address", aliases=("server",))
    port: int = whole(DEFAULT_PORTS["grpc"], "the server's port", minimum=1, maximum=65535, note="`4000` for HTTP")
    username: str = text("", "gRPC credentials; HTTP basic auth", aliases=("user",))
    password: str = text("", "the password of `username`", aliases=("pass",), secret=True)
    database: str = text("public", "the database; the `db` query parameter with HTTP", aliases=("db",))
    table: str = text("traces", "the table; the measurement with HTTP")
    timeout: float = duration("5s", "the time budget of one batch, all retries included", positive=True)
    insecure: bool = flag(True, "`false` means TLS (as `tls = true`)")
    tls: bool = flag(
        False, "HTTPS with certificate verification; for gRPC, needs `ca`", note="`true` for `https://` or `insecure = false`"
    )
    ca: str = text("", "gRPC over TLS: path of the server's CA certificate (PEM)")
    write_path: str = text(DEFAULT_WRITE_PATH, "HTTP only: the path of the write endpoint")
    gzip: bool = flag(True, "HTTP only: gzip bodies of 512 bytes and more", aliases=("compress",))

    def validate(self, given: Mapping[str, str]) -> GreptimeSettings:
        def key(name: str) -> str:
            return given.get(name, name)

        from_url: dict[str, Any] = {}
        if self.url:
            try:
                from_url = parse_dsn(self.url)
            except ValueError as exc:
                raise ConfigError(key("url"), self.url, str(exc)) from None
        # A key written in the table wins over the URL, which wins over the default.
        resolved = {name: getattr(self, name) if name in given else value for name, value in from_url.items()}
        protocol = resolved.get("protocol", self.protocol)
        if "port" not in given and "port" not in from_url:
            resolved["port"] = DEFAULT_PORTS[protocol]
        settings = replace(self, **resolved)
        if not settings.insecure:
            settings = replace(settings, tls=True)
        for name, expected in (
            ("host", "expected a host name or address"),
            ("database", "expected a database name"),
            ("table", "expected a table name"),
        ):
            if not getattr(settings, name):
                raise ConfigError(key(name), getattr(settings, name), expected)
        if not settings.write_path.startswith("/"):
            raise ConfigError(key("write_path"), settings.write_path, "expected a path starting with '/'")
        if settings.protocol == "grpc" and settings.tls and not settings.ca:
            raise ConfigError(key("ca"), settings.ca, "gRPC over TLS needs the path of the server's CA certificate (PEM) in 'ca'")
        return settings


# -- the driver -----------------------------------------------------------------------


class GreptimeDriver:
    settings_schema = GreptimeSettings

    def __init__(self, config: ConnectionConfig) -> None:
        self.target = settings_for(config, GreptimeSettings)
        self.columns = columns_for(config)
        if not any(c.role not in (TAG, TIME) for c in self.columns):
            raise ConfigError(
                f"{config.path}.fields",
                list(config.fields or ()),
                "a GreptimeDB row needs at least one field column besides tags and the time index",
                config.source,
            )
        self.rows_written = 0
        self._sender: HttpSender | None = None
        self._client: Any = None
        self._columns: list[Any] = []
        self._unavailable: tuple[type[BaseException], ...] = ()
        t = self.target
        if t.protocol == "http":
            self._lines = LineProtocolEncoder(t.table, self.columns)
            headers = {"Authorization": basic_auth(t.username, t.password)} if t.username else {}
            scheme = "https" if t.tls else "http"
            url = f"{scheme}://{_host_for_url(t.host)}:{t.port}{t.write_path}?db={quote(t.database)}&precision=ns"
            self._sender = HttpSender(url, headers=headers, timeout=t.timeout, compress=t.gzip)
            self.url = url
        else:
            self._init_grpc(f"{config.path}.driver")
            self.url = f"{t.host}:{t.port}"

    def _init_grpc(self, key: str) -> None:
        try:
            ingester = importlib.import_module("greptimedb_ingester")
        except ImportError as exc:
            raise MissingExtraError(key, "greptime", "greptime", exc.name or "greptimedb_ingester") from None
        t = self.target
        types = {
            TAG: (ingester.ColumnDataType.STRING, ingester.SemanticType.TAG),
            TIME: (ingester.ColumnDataType.TIMESTAMP_NANOSECOND, ingester.SemanticType.TIMESTAMP),
            INT: (ingester.ColumnDataType.INT64, ingester.SemanticType.FIELD),
            FLOAT: (ingester.ColumnDataType.FLOAT64, ingester.SemanticType.FIELD),
            STRING: (ingester.ColumnDataType.STRING, ingester.SemanticType.FIELD),
        }
        self._columns = [ingester.Column(c.name, *types[c.role]) for c in self.columns]
        options: dict[str, Any] = {"timeout_secs": t.timeout, "connect_timeout_secs": t.timeout}
        if t.username:
            options["username"] = t.username
            options["password"] = t.password
        if t.tls:
            options["tls_server_ca"] = t.ca
        self._client = ingester.Client([f"{_host_for_url(t.host)}:{t.port}"], database=t.database, **options)
        self._unavailable = (ingester.GreptimeError,)
        self.request_count = 0
        self.retry_count = 0
        self.failed_count = 0

    # -- rows ---------------------------------------------------------------------------
    def rows(self, spans: Iterable[SpanData]) -> list[list[Any]]:
        """The gRPC rows: one list per span, in column order."""
        plan = [(c.role, c.getter) for c in self.columns]
        return [[_cell(role, getter(s)) for role, getter in plan] for s in spans]

    def grpc_columns(self) -> list[Any]:
        """The ``greptimedb_ingester.Column`` schema sent with each insert."""
        return list(self._columns)

    # -- the driver protocol ------------------------------------------------------------
    def write(self, spans: Sequence[SpanData]) -> None:
        if not spans:
            return
        if self._sender is not None:
            self._sender.post(self._lines.encode(spans), "text/plain; charset=utf-8")
            self.rows_written += len(spans)
            return
        self._insert(self.rows(spans))
        self.rows_written += len(spans)

    def _insert(self, rows: list[list[Any]]) -> None:
        deadline = time.monotonic() + self.target.timeout
        attempt = 0
        while True:
            attempt += 1
            self.request_count += 1
            try:
                self._client.insert(self.target.table, self._columns, rows)
                return
            except self._unavailable as exc:
                delay = backoff_delay(attempt)
                if not _transient(exc) or time.monotonic() + delay >= deadline:
                    self.failed_count += 1
                    raise
                self.retry_count += 1
                time.sleep(delay)

    def close(self) -> None:
        if self._sender is not None:
            self._sender.close()

    def stats(self) -> dict[str, Any]:
        """Driver figures beside the pipeline's own: requests, retries, failed
        requests (and the last HTTP status with ``protocol = "http"``), rows written."""
        if self._sender is not None:
            return {**self._sender.stats(), "rows_written": self.rows_written}
        return {
            "request_count": self.request_count,
            "retry_count": self.retry_count,
            "failed_request_count": self.failed_count,
            "rows_written": self.rows_written,
        }


def _transient(exc: BaseException) -> bool:
    """gRPC failures worth retrying: the server unreachable or overloaded, not a
    schema or permission error that will fail the same way again."""
    text = str(exc).lower()
    return any(word in text for word in ("unavailable", "connect", "deadline", "timed out", "resource exhausted"))


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
