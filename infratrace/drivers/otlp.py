"""``driver = "otlp"``: spans as OTLP/HTTP requests — binary protobuf by default,
OTLP/JSON with ``encoding = "json"``, optionally gzipped. The requests are written
straight from :class:`~infratrace.SpanData` (:mod:`._otlp_wire`), standard library only.

Responses follow the OTLP/HTTP specification: 429/502/503/504 and connection failures
are retried within the ``timeout`` budget (``_http.HttpSender``), other statuses fail
the batch at once, and the spans a collector rejects in a partial success are counted
(:meth:`OTLPDriver.stats`). Decisions are written down in docs/drivers.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from .._config import ConnectionConfig
from .._errors import ConfigError
from .._fields import field_getter
from .._settings import STR, choice, duration, flag, settings_for, table, text
from .._spandata import Resource, SpanData
from ._http import HttpSender
from ._otlp_wire import Getter, TraceEncoder, read_partial_success, read_partial_success_json

__all__ = ["DEFAULT_ENDPOINT", "OTLPDriver", "OTLPSettings", "parse_otel_headers"]

DEFAULT_ENDPOINT = "http://127.0.0.1:4318/v1/traces"
ENCODINGS = ("protobuf", "json")
COMPRESSIONS = ("none", "gzip")
MAX_TIMEOUT_MS = 3_600_000.0
_CONTENT_TYPES = {"protobuf": "application/x-protobuf", "json": "application/json"}


def parse_otel_headers(text: str) -> dict[str, str]:
    """``OTEL_EXPORTER_OTLP_HEADERS``: ``key1=value1,key2=value2``, values URL-encoded."""
    headers: dict[str, str] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if sep and name.strip():
            headers[unquote(name.strip())] = unquote(value.strip())
    return headers


def _endpoint_from_env() -> str:
    traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return traces
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if base:
        return base.rstrip("/") + "/v1/traces"
    return DEFAULT_ENDPOINT


def _from_env(name: str) -> tuple[str, str]:
    """``OTEL_EXPORTER_OTLP_TRACES_<name>``, else ``OTEL_EXPORTER_OTLP_<name>``:
    ``(variable, value)``, or ``("", "")`` when neither is set."""
    for variable in (f"OTEL_EXPORTER_OTLP_TRACES_{name}", f"OTEL_EXPORTER_OTLP_{name}"):
        value = os.environ.get(variable, "").strip()
        if value:
            return variable, value
    return "", ""


def _timeout_from_env(default: float) -> float:
    """``OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT``: milliseconds, as OpenTelemetry reads it."""
    variable, value = _from_env("TIMEOUT")
    if not variable:
        return default
    try:
        millis = float(value)
    except ValueError:
        millis = float("nan")
    if not 0 < millis <= MAX_TIMEOUT_MS:  # NaN fails too
        raise ConfigError(variable, value, f"expected milliseconds, more than 0 and at most {MAX_TIMEOUT_MS:.0f}", "environment")
    return millis / 1000.0


def _compression_from_env(default: str) -> str:
    variable, value = _from_env("COMPRESSION")
    if not variable:
        return default
    if value.lower() not in COMPRESSIONS:
        raise ConfigError(variable, value, 'expected "gzip" or "none"', "environment")
    return value.lower()


def _encoding_from_env(default: str) -> str:
    """``OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL``: ``http/protobuf`` or ``http/json``
    (this driver speaks OTLP over HTTP only)."""
    variable, value = _from_env("PROTOCOL")
    if not variable:
        return default
    protocols = {"http/protobuf": "protobuf", "http/json": "json"}
    if value.lower() not in protocols:
        raise ConfigError(variable, value, 'expected "http/protobuf" or "http/json" (gRPC is not supported)', "environment")
    return protocols[value.lower()]


def _headers(settings: OTLPSettings) -> dict[str, str]:
    headers = parse_otel_headers(os.environ.get("OTEL_EXPORTER_OTLP_HEADERS", ""))
    headers.update(parse_otel_headers(os.environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "")))
    headers.update(settings.headers)
    return headers


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110 token)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # what no header value or URL may hold (tab is allowed)


@dataclass(frozen=True)
class OTLPSettings:
    """``[trace.<conn>.setting]`` of ``driver = "otlp"``. The environment variables
    are read when the driver is built, not here: validation depends on the file alone."""

    endpoint: str = text(
        "",
        "the full URL of the traces endpoint (`http://` or `https://`)",
        aliases=("url",),
        note="unset: `$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else `$OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`, "
        f"else `{DEFAULT_ENDPOINT}`",
    )
    timeout: float = duration("5s", "the time budget of one batch, all retries included", positive=True)
    service: str = text("", "overrides `service.name` in the OTLP resource", note="the resource's `service.name`")
    headers: Mapping[str, str] = table(
        "extra HTTP headers; a TOML header replaces an environment header of the same name",
        values=STR,
        note="plus `$OTEL_EXPORTER_OTLP_HEADERS` and `$OTEL_EXPORTER_OTLP_TRACES_HEADERS`: `k=v,k2=v2`, URL-encoded",
        secret=True,  # authorization tokens
    )
    encoding: str = choice(
        "protobuf", ENCODINGS, '`"protobuf"` (`application/x-protobuf`) or `"json"` (OTLP/JSON: hex ids, integer enums)'
    )
    compression: str = choice("none", COMPRESSIONS, '`"gzip"` compresses bodies of 512 bytes and more')
    insecure: bool = flag(False, "`true` skips TLS certificate verification for `https://`")

    def validate(self, given: Mapping[str, str]) -> OTLPSettings:
        if self.endpoint:
            parts = urlsplit(self.endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname or _CONTROL.search(self.endpoint):
                raise ConfigError(given.get("endpoint", "endpoint"), self.endpoint, "expected an http:// or https:// URL")
        headers_key = given.get("headers", "headers")
        for name, value in self.headers.items():
            if not _TOKEN.fullmatch(name):
                raise ConfigError(f"{headers_key}.{name}", value, "expected an HTTP header name (letters, digits, -)")
            if _CONTROL.search(value):
                raise ConfigError(
                    f"{headers_key}.{name}", value, "expected a header value without control characters (CR, LF, NUL)"
                )
        return self


def _extra_attributes(config: ConnectionConfig) -> list[tuple[str, Getter]]:
    """``fields`` → extra span attributes: a list adds those fields under their own
    names, a table adds the listed fields under the new names. Unset → none."""
    fields = config.fields
    if fields is None:
        pairs: list[tuple[str, str]] = []
    elif isinstance(fields, Mapping):
        pairs = [(dst, src) for src, dst in fields.items()]
    else:
        pairs = [(name, name) for name in fields]
    plan: list[tuple[str, Getter]] = []
    for key, source in pairs:
        getter = field_getter(source, config.flag)
        if getter is not None:
            plan.append((key, getter))
    if config.flag and not any(key == "flag" for key, _ in plan):
        flag = config.flag
        plan.append(("flag", lambda s: flag))
    return plan


class OTLPDriver:
    settings_schema = OTLPSettings

    def __init__(self, config: ConnectionConfig) -> None:
        settings = settings_for(config, OTLPSettings)
        endpoint = settings.endpoint or _endpoint_from_env()
        given = config.setting
        self.timeout = settings.timeout if "timeout" in given else _timeout_from_env(settings.timeout)
        self.service = settings.service
        self.encoding = settings.encoding if "encoding" in given else _encoding_from_env(settings.encoding)
        compression = settings.compression if "compression" in given else _compression_from_env(settings.compression)
        try:
            self._sender = HttpSender(
                endpoint,
                headers=_headers(settings),
                timeout=self.timeout,
                compress=compression == "gzip",
                verify=not settings.insecure,
            )
        except ValueError as exc:  # only an endpoint from the environment can still be bad here
            raise ConfigError(f"{config.path}.setting.endpoint", endpoint, str(exc), config.source) from None
        self.endpoint = endpoint
        self._extra = _extra_attributes(config)
        self._encoder = TraceEncoder(service=self.service, extra=self._extra, version=_version())
        if self.encoding == "protobuf":
            self.encode = self._encode_protobuf
            self.write_encoded = self._write_protobuf
        self.rejected_spans = 0
        self.partial_successes = 0
        self.last_partial_error = ""

    # -- encoding ---------------------------------------------------------------------
    def body(self, spans: Sequence[SpanData]) -> bytes:
        """The ``ExportTraceServiceRequest`` for one batch, in the configured encoding."""
        if self.encoding == "json":
            return self._encoder.json(spans)
        return self._encoder.protobuf(spans)

    # -- the driver protocol --------------------------------------------------------------
    def write(self, spans: Sequence[SpanData]) -> None:
        if spans:
            self._post(self.body(spans))

    def _post(self, body: bytes) -> None:
        response = self._sender.post(body, _CONTENT_TYPES[self.encoding])
        self._partial_success(response.body, response.content_type)

    # protobuf: each span is encoded where it ends; the connection's thread only wraps
    # the encoded spans into a request and sends it.
    def _encode_protobuf(self, span: SpanData) -> tuple[Resource, bytes]:
        return (span.resource, self._encoder.span_field(span))

    def _write_protobuf(self, spans: Sequence[tuple[Resource, bytes]]) -> None:
        if spans:
            self._post(self._encoder.protobuf_request(spans))

    def _partial_success(self, body: bytes, content_type: str) -> None:
        if not body:
            return
        try:
            if "json" in content_type:
                rejected, message = read_partial_success_json(body)
            else:
                rejected, message = read_partial_success(body)
        except Exception:  # a reply we cannot read is still a 2xx: the spans were taken
            return
        if rejected or message:
            self.partial_successes += 1
            self.rejected_spans += rejected
            self.last_partial_error = message

    def close(self) -> None:
        self._sender.close()

    def stats(self) -> dict[str, Any]:
        """Driver figures beside the pipeline's own: HTTP requests, retries, failed
        requests, the last HTTP status, and spans rejected in partial successes."""
        return {
            **self._sender.stats(),
            "rejected_span_count": self.rejected_spans,
            "partial_success_count": self.partial_successes,
            "last_partial_error": self.last_partial_error,
        }


def _version() -> str:
    from .. import __version__

    return __version__
