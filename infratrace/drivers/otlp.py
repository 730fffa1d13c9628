"""``driver = "otlp"``: spans as OTLP/HTTP requests (SPEC §6), built with the official
``opentelemetry-proto`` message classes — binary protobuf by default, OTLP/JSON with
``encoding = "json"``, optionally gzipped. Needs ``pip install 'infratrace[otlp]'``.

Responses follow the OTLP/HTTP specification: 429/502/503/504 and connection failures
are retried within the ``timeout`` budget (``_http.HttpSender``), other statuses fail
the batch at once, and the spans a collector rejects in a partial success are counted
(:meth:`OTLPDriver.stats`). Decisions are written down in docs/drivers.md.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any
from urllib.parse import unquote

from .._config import ConnectionConfig, SettingReader
from .._errors import MissingExtraError
from .._fields import ResourceView, field_getter
from .._span import Span
from ._http import HttpSender

__all__ = ["DEFAULT_ENDPOINT", "OTLPDriver", "parse_otel_headers"]

DEFAULT_ENDPOINT = "http://127.0.0.1:4318/v1/traces"
DEFAULT_TIMEOUT = 5.0
SCOPE_NAME = "infratrace"
ENCODINGS = ("protobuf", "json")
COMPRESSIONS = ("none", "gzip")
_INT64 = (-(2**63), 2**63 - 1)
_KIND_NUMBERS = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
_STATUS_UNSET, _STATUS_OK, _STATUS_ERROR = 0, 1, 2
_CONTENT_TYPES = {"protobuf": "application/x-protobuf", "json": "application/json"}

Getter = Callable[[Span, ResourceView], Any]


def _import_proto(key: str) -> tuple[ModuleType, ModuleType, ModuleType, ModuleType, ModuleType]:
    try:
        return (
            importlib.import_module("opentelemetry.proto.common.v1.common_pb2"),
            importlib.import_module("opentelemetry.proto.resource.v1.resource_pb2"),
            importlib.import_module("opentelemetry.proto.trace.v1.trace_pb2"),
            importlib.import_module("opentelemetry.proto.collector.trace.v1.trace_service_pb2"),
            importlib.import_module("google.protobuf.json_format"),
        )
    except ImportError as exc:
        raise MissingExtraError(key, "otlp", "otlp", exc.name or "opentelemetry-proto") from None


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


def _headers(setting: SettingReader) -> dict[str, str]:
    headers = parse_otel_headers(os.environ.get("OTEL_EXPORTER_OTLP_HEADERS", ""))
    headers.update(parse_otel_headers(os.environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "")))
    for name, value in setting.table("headers").items():
        if not isinstance(value, str):
            raise setting.error(f"headers.{name}", value, "expected a string header value")
        headers[str(name)] = value
    return headers


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
        plan.append(("flag", lambda s, r: flag))
    return plan


class OTLPDriver:
    def __init__(self, config: ConnectionConfig) -> None:
        setting = config.setting_reader()
        key = f"{config.path}.driver"
        common, resource, trace, service, json_format = _import_proto(key)
        self._AnyValue: Any = common.AnyValue
        self._ArrayValue: Any = common.ArrayValue
        self._KeyValue: Any = common.KeyValue
        self._KeyValueList: Any = common.KeyValueList
        self._Scope: Any = common.InstrumentationScope
        self._Resource: Any = resource.Resource
        self._Span: Any = trace.Span
        self._Status: Any = trace.Status
        self._ResourceSpans: Any = trace.ResourceSpans
        self._ScopeSpans: Any = trace.ScopeSpans
        self._Request: Any = service.ExportTraceServiceRequest
        self._Response: Any = service.ExportTraceServiceResponse
        self._json_format = json_format

        endpoint = setting.str("endpoint", "url", default="") or _endpoint_from_env()
        self.timeout = setting.duration("timeout", default=DEFAULT_TIMEOUT)
        if self.timeout <= 0:
            raise setting.error("timeout", self.timeout, "expected a positive duration")
        self.service = setting.str("service", default="")
        self.encoding = setting.choice("encoding", choices=ENCODINGS, default="protobuf")
        compression = setting.choice("compression", choices=COMPRESSIONS, default="none")
        insecure = setting.bool("insecure", default=False)
        headers = _headers(setting)
        setting.reject_unknown()
        try:
            self._sender = HttpSender(
                endpoint,
                headers=headers,
                timeout=self.timeout,
                compress=compression == "gzip",
                verify=not insecure,
            )
        except ValueError as exc:
            raise setting.error("endpoint", endpoint, str(exc)) from None
        self.endpoint = endpoint
        self._extra = _extra_attributes(config)
        self._resource_cache: tuple[ResourceView, Any] | None = None
        self._scope = self._Scope(name=SCOPE_NAME, version=_version())
        self.rejected_spans = 0
        self.partial_successes = 0
        self.last_partial_error = ""

    # -- encoding ---------------------------------------------------------------------
    def encode(self, spans: Sequence[Span], resource: ResourceView) -> Any:
        """The ``ExportTraceServiceRequest`` for one batch."""
        encode_span = self._encode_span
        return self._Request(
            resource_spans=[
                self._ResourceSpans(
                    resource=self._resource(resource),
                    scope_spans=[
                        self._ScopeSpans(scope=self._scope, spans=[encode_span(s, resource) for s in spans])
                    ],
                )
            ]
        )

    def _resource(self, view: ResourceView) -> Any:
        cached = self._resource_cache
        if cached is not None and cached[0] is view:
            return cached[1]
        attributes = dict(view.attributes)
        if self.service:
            attributes["service.name"] = self.service
        if view.pid:  # like the SDK, which sets a random UUID per process
            attributes.setdefault("service.instance.id", view.instance)
        attributes.setdefault("telemetry.sdk.language", "python")
        attributes.setdefault("telemetry.sdk.name", SCOPE_NAME)
        attributes.setdefault("telemetry.sdk.version", _version())
        message = self._Resource(attributes=self._attributes(attributes))
        self._resource_cache = (view, message)
        return message

    def _encode_span(self, s: Span, r: ResourceView) -> Any:
        status = s._status
        if status is None:
            status_message = self._Status(code=_STATUS_UNSET)
        elif status[0] == "error":
            status_message = self._Status(code=_STATUS_ERROR, message=status[2])
        else:
            status_message = self._Status(code=_STATUS_OK)
        attributes = self._attributes(s.attributes)
        for key, getter in self._extra:
            encoded = self._key_value(key, getter(s, r))
            if encoded is not None:
                attributes.append(encoded)
        return self._Span(
            trace_id=s._tid.to_bytes(16, "big"),
            span_id=s._sid.to_bytes(8, "big"),
            parent_span_id=s._pid.to_bytes(8, "big") if s._pid else b"",
            trace_state=s.tracestate,
            flags=s.flags & 0xFF,
            name=s.name,
            kind=_KIND_NUMBERS.get(s.kind, 1),
            start_time_unix_nano=s.start_time_unix_nano,
            end_time_unix_nano=s.end_time_unix_nano,
            attributes=attributes,
            events=[
                self._Span.Event(name=name, time_unix_nano=ts, attributes=self._attributes(attrs))
                for name, ts, attrs in s.events
            ],
            status=status_message,
        )

    def _attributes(self, attributes: Mapping[str, Any]) -> list[Any]:
        out = []
        for key, value in attributes.items():
            encoded = self._key_value(str(key), value)
            if encoded is not None:
                out.append(encoded)
        return out

    def _key_value(self, key: str, value: Any) -> Any:
        if value is None:  # the OTel SDK drops None attributes; so do we
            return None
        return self._KeyValue(key=key, value=self._value(value))

    def _value(self, value: Any) -> Any:
        if isinstance(value, bool):
            return self._AnyValue(bool_value=value)
        if isinstance(value, str):
            return self._AnyValue(string_value=value)
        if isinstance(value, int):
            if _INT64[0] <= value <= _INT64[1]:
                return self._AnyValue(int_value=value)
            return self._AnyValue(string_value=str(value))
        if isinstance(value, float):
            return self._AnyValue(double_value=value)
        if isinstance(value, (bytes, bytearray)):
            return self._AnyValue(bytes_value=bytes(value))
        if isinstance(value, Mapping):
            return self._AnyValue(
                kvlist_value=self._KeyValueList(
                    values=[self._KeyValue(key=str(k), value=self._value(v)) for k, v in value.items()]
                )
            )
        if isinstance(value, (list, tuple, set, frozenset)):
            return self._AnyValue(array_value=self._ArrayValue(values=[self._value(v) for v in value]))
        if value is None:
            return self._AnyValue()
        return self._AnyValue(string_value=_safe_str(value))

    def body(self, spans: Sequence[Span], resource: ResourceView) -> bytes:
        """The request body in the configured encoding."""
        request = self.encode(spans, resource)
        if self.encoding == "json":
            return json.dumps(_hex_ids(self._json_format.MessageToDict(request, use_integers_for_enums=True))).encode()
        data: bytes = request.SerializeToString()
        return data

    # -- the driver protocol --------------------------------------------------------------
    def write(self, spans: Sequence[Span], resource: ResourceView) -> None:
        if not spans:
            return
        response = self._sender.post(self.body(spans, resource), _CONTENT_TYPES[self.encoding])
        self._partial_success(response.body, response.content_type)

    def _partial_success(self, body: bytes, content_type: str) -> None:
        if not body:
            return
        rejected = 0
        message = ""
        try:
            if "json" in content_type:
                partial = json.loads(body).get("partialSuccess") or {}
                rejected = int(partial.get("rejectedSpans", 0) or 0)
                message = str(partial.get("errorMessage", "") or "")
            else:
                reply = self._Response.FromString(body)
                rejected = reply.partial_success.rejected_spans
                message = reply.partial_success.error_message
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


def _hex_ids(document: dict[str, Any]) -> dict[str, Any]:
    """OTLP/JSON writes trace and span ids as hex, not the base64 of proto3 JSON."""
    for resource_spans in document.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = _b64_to_hex(span[key])
    return document


def _b64_to_hex(text: str) -> str:
    return base64.b64decode(text).hex()


def _version() -> str:
    from .. import __version__

    return __version__


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"
