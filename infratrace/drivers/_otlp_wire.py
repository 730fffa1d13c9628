"""OTLP trace requests written straight from :class:`~infratrace.SpanData`: the
protobuf wire format of ``ExportTraceServiceRequest``, OTLP/JSON, and the reading of
the collector's ``ExportTraceServiceResponse`` — no protobuf package at run time.

Protobuf message objects built per span would cost more than the rest of the pipeline,
so the request is written as bytes: each span's fields are joined from pieces that are
mostly cached or precomputed (field tags, encoded attribute keys, whole key/value pairs
for repeated values, span names, the resource and scope once per :class:`Resource`).
Fields are written in field-number order and zero values left out, as protobuf's own
serialiser does, so a request decodes to exactly the message the official classes
would build.

Field numbers (the OTLP protobuf schema, ``opentelemetry.proto.*.v1``):

- ``ExportTraceServiceRequest``: resource_spans 1
- ``ResourceSpans``: resource 1, scope_spans 2; ``Resource``: attributes 1
- ``ScopeSpans``: scope 1, spans 2; ``InstrumentationScope``: name 1, version 2
- ``Span``: trace_id 1, span_id 2, trace_state 3, parent_span_id 4, name 5, kind 6,
  start_time_unix_nano 7 (fixed64), end_time_unix_nano 8 (fixed64), attributes 9,
  events 11, status 15, flags 16 (fixed32)
- ``Span.Event``: time_unix_nano 1 (fixed64), name 2, attributes 3
- ``Status``: message 2, code 3
- ``KeyValue``: key 1, value 2; ``AnyValue``: string 1, bool 2, int 3, double 4,
  array 5; ``ArrayValue``: values 1
- ``ExportTraceServiceResponse``: partial_success 1; ``ExportTracePartialSuccess``:
  rejected_spans 1, error_message 2
"""

from __future__ import annotations

import binascii
import json
import math
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from .._json import encode_json
from .._spandata import Event, Resource, SpanData, safe_str, safe_value
from .._spandata import _scalar as safe_scalar

__all__ = [
    "KIND_NUMBERS",
    "SCOPE_NAME",
    "TraceEncoder",
    "read_partial_success",
    "read_partial_success_json",
    "varint",
]

SCOPE_NAME = "infratrace"
KIND_NUMBERS: dict[str, int] = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2
# Entries per cache (encoded keys, key/value pairs, span names): a cache that fills up
# is emptied, so a burst of one-off values costs memory once and the common values come
# back with the next spans. Key/value pairs longer than CACHE_ITEM_BYTES are not kept
# (long values seldom repeat), and the span names kept stay under CACHE_NAME_BYTES.
CACHE_LIMIT = 4096
CACHE_ITEM_BYTES = 512
CACHE_NAME_BYTES = 1 << 20
RESOURCE_CACHE_LIMIT = 8

Getter = Callable[[SpanData], Any]

_U64 = (1 << 64) - 1
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


# -- wire helpers ----------------------------------------------------------------------
def varint(n: int) -> bytes:
    """Base-128 varint; a negative int64 as its 64-bit two's complement (ten bytes),
    as protobuf writes ``int64``."""
    n &= _U64
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Lengths below this are one list index away (most fields and most spans).
_SMALL = 2048
_SIZES: tuple[bytes, ...] = tuple(varint(n) for n in range(_SMALL))
# "spans" field of ScopeSpans (tag 0x12) with the span's length, ready to prepend.
_SPAN_PREFIXES: tuple[bytes, ...] = tuple(b"\x12" + size for size in _SIZES)


def _delimited(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    n = len(payload)
    return tag + (_SIZES[n] if n < _SMALL else varint(n)) + payload


def _utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: protobuf strings must be valid UTF-8
        return text.encode("utf-8", "replace")


_fromhex = binascii.a2b_hex  # bytes.fromhex, without its whitespace skipping: faster
_TIMES = struct.Struct("<QBQ")  # start (7, fixed64; its tag ends the span's head), end (8, fixed64)
_FIXED64 = struct.Struct("<BQ")  # a one-byte tag and a fixed64
_DOUBLE = struct.Struct("<Bd")  # AnyValue.double_value (4, fixed64)
_FLAGS = struct.Struct("<BBI")  # Span.flags (16, fixed32): a two-byte tag
_TRUE, _FALSE = b"\x10\x01", b"\x10\x00"

# Span status then flags, the tail of every span without an error message: one piece.
_STATUS_UNSET_FIELD = b"\x7a\x00"  # an empty Status: code UNSET
_STATUS_OK_FIELD = b"\x7a\x02\x18\x01"
_FLAGS_FIELDS: tuple[bytes, ...] = (b"", *(_FLAGS.pack(0x85, 0x01, f) for f in range(1, 256)))
_TAILS_UNSET: tuple[bytes, ...] = tuple(_STATUS_UNSET_FIELD + f for f in _FLAGS_FIELDS)
_TAILS_OK: tuple[bytes, ...] = tuple(_STATUS_OK_FIELD + f for f in _FLAGS_FIELDS)


def _times(start: int, end: int) -> bytes:
    """Span fields 7 and 8 the slow way: a zero time left out, as protobuf leaves out
    zero values, and a time wrapped to 64 bits as a fixed64 holds it."""
    start &= _U64
    end &= _U64
    return (_FIXED64.pack(0x39, start) if start else b"") + (_FIXED64.pack(0x41, end) if end else b"")


def _status_code(status: str, code: int, message: str) -> int:
    """``error`` → ERROR; ``ok`` → OK once something set it (a code or a message), and
    UNSET for a span nobody gave a status, as the OpenTelemetry SDK leaves it."""
    if status == "error":
        return STATUS_ERROR
    return STATUS_OK if code or message else STATUS_UNSET


# What an array may hold; anything else in a list is made one (as ``safe_value`` does).
_SCALARS = frozenset((str, bool, int, float))


def _any_value(value: Any) -> bytes:
    """An ``AnyValue`` message (without tag or length)."""
    cls = value.__class__
    if cls is str:
        return _delimited(b"\x0a", _utf8(value))
    if cls is bool:
        return _TRUE if value else _FALSE
    if cls is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            return b"\x18" + varint(value)
        return _delimited(b"\x0a", str(value).encode())
    if cls is float:
        return _DOUBLE.pack(0x21, value) if math.isfinite(value) else _delimited(b"\x0a", str(value).encode())
    if cls is list:
        items = [item if item.__class__ in _SCALARS else safe_scalar(item) for item in value]
        return _delimited(b"\x2a", b"".join([_delimited(b"\x0a", _any_value(item)) for item in items]))
    # Not one of the safe types (a value from a ``fields`` getter, a SpanData built by hand).
    converted = safe_value(value)
    return b"" if converted is None else _any_value(converted)


def _json_value(value: Any) -> dict[str, Any]:
    """An ``AnyValue`` in OTLP/JSON: int64 as a decimal string."""
    cls = value.__class__
    if cls is str:
        return {"stringValue": value}
    if cls is bool:
        return {"boolValue": value}
    if cls is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            return {"intValue": str(value)}
        return {"stringValue": str(value)}
    if cls is float:
        return {"doubleValue": value} if math.isfinite(value) else {"stringValue": str(value)}
    if cls is list:
        items = [item if item.__class__ in _SCALARS else safe_scalar(item) for item in value]
        return {"arrayValue": {"values": [_json_value(item) for item in items]}}
    converted = safe_value(value)
    return {} if converted is None else _json_value(converted)


def _json_attributes(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {"key": key if key.__class__ is str else safe_str(key), "value": _json_value(value)}
        for key, value in attributes.items()
        if value is not None
    ]


def resource_attributes(resource: Resource, service: str, version: str) -> dict[str, Any]:
    """The OTLP resource: ``[infratrace]``'s attributes, ``service`` replacing
    ``service.name`` when set, plus ``service.instance.id`` and the ``telemetry.sdk.*``
    attributes the OpenTelemetry SDK also sends."""
    attributes = dict(resource.attributes)
    if service:
        attributes["service.name"] = service
    if resource.pid:  # like the SDK, which sets a random UUID per process
        attributes.setdefault("service.instance.id", resource.instance)
    attributes.setdefault("telemetry.sdk.language", "python")
    attributes.setdefault("telemetry.sdk.name", SCOPE_NAME)
    attributes.setdefault("telemetry.sdk.version", version)
    return attributes


# -- the encoder -----------------------------------------------------------------------
class TraceEncoder:
    """Encodes batches of spans as one ``ExportTraceServiceRequest``; one per driver
    (its caches are not shared between threads: a driver writes from one thread at a
    time).

    ``service`` overrides the resource's ``service.name``; ``extra`` lists additional
    span attributes as ``(key, getter)``, read from each span."""

    def __init__(self, *, service: str = "", extra: Sequence[tuple[str, Getter]] = (), version: str = "") -> None:
        self.service = service
        self.extra = tuple(extra)
        self.version = version
        self._keys: dict[str, bytes] = {}  # attribute key → encoded KeyValue.key field
        # (key, value) → the whole span attribute (tag, length, KeyValue), one dict per
        # value type so that 1, 1.0 and True (equal as dict keys) never meet.
        self._pairs: dict[type, dict[tuple[str, Any], bytes]] = {str: {}, bool: {}, int: {}, float: {}}
        # kind → span name → the span's name and kind fields and the tag of its start
        # time (Span fields 5 to 7), one piece; the kinds are fixed, the names cached.
        self._heads: dict[str, dict[str, bytes]] = {kind: {} for kind in KIND_NUMBERS}
        self._heads_count = self._heads_bytes = 0
        self._resources: dict[Resource, bytes] = {}  # → ResourceSpans.resource field
        self._json_resources: dict[Resource, dict[str, Any]] = {}
        self._scope = _delimited(
            b"\x0a", _delimited(b"\x0a", SCOPE_NAME.encode()) + (_delimited(b"\x12", version.encode()) if version else b"")
        )
        self._json_scope: dict[str, Any] = {"name": SCOPE_NAME, "version": version} if version else {"name": SCOPE_NAME}

    # -- protobuf ----------------------------------------------------------------------
    def protobuf(self, spans: Sequence[SpanData]) -> bytes:
        """The request's protobuf encoding (spans grouped by resource, in order)."""
        span_field = self.span_field
        return self.protobuf_request([(s.resource, span_field(s)) for s in spans])

    def span_field(self, s: SpanData) -> bytes:
        """One span as a ``ScopeSpans.spans`` field (tag, length, ``Span``): the part of
        a request that depends on the span alone, so that it can be encoded where the
        span ends. The caches it reads and fills are plain dicts, safe to share between
        threads under the GIL (their size limits are approximate there)."""
        name, kind, tid, sid, pid, flags, tracestate, start, end, status, code, message, attrs, events, _ = s
        if tracestate:
            ids = _fromhex(f"0a10{tid}1208{sid}") + _delimited(b"\x1a", _utf8(tracestate))
            if pid:
                ids += _fromhex(f"2208{pid}")
        elif pid:
            ids = _fromhex(f"0a10{tid}1208{sid}2208{pid}")
        else:
            ids = _fromhex(f"0a10{tid}1208{sid}")
        try:  # subscripts, not .get(): the cheapest lookups when they hit
            head = self._heads[kind][name]
            times = _TIMES.pack(start, 0x41, end) if start and end else b""
        except (KeyError, struct.error):  # a new name, an unknown kind, a time beyond 64 bits
            head, times = self._head(kind, name), b""
        if not times:  # a zero time (left out, as protobuf leaves out zeros) or one too big
            head = head[:-1] + _times(start, end)
        parts = [ids, head, times]
        append = parts.append
        get_pairs = self._pairs.get
        for item in attrs.items():
            cache = get_pairs(type(item[1]))
            if cache is None:  # a list: not cached
                append(self._key_value(item[0], item[1]))
            else:
                encoded = cache.get(item)
                append(encoded if encoded is not None else self._cached_key_value(item, cache))
        if self.extra:
            for key, getter in self.extra:
                value = safe_value(getter(s))
                if value is not None:
                    append(self._key_value(key, value))
        if events:
            for event in events:
                append(self._event(event))
        flags &= 0xFF
        if status == "error":
            append(self._error_status(message))
            append(_FLAGS_FIELDS[flags])
        else:
            append(_TAILS_OK[flags] if code or message else _TAILS_UNSET[flags])
        body = b"".join(parts)
        n = len(body)
        return (_SPAN_PREFIXES[n] if n < _SMALL else b"\x12" + varint(n)) + body

    def protobuf_request(self, spans: Sequence[tuple[Resource, bytes]]) -> bytes:
        """The ``ExportTraceServiceRequest`` of spans encoded by :meth:`span_field`,
        each with its resource (grouped by resource, in order)."""
        groups: dict[Resource, list[bytes]] = {}
        for resource, field in spans:
            group = groups.get(resource)
            if group is None:
                group = groups[resource] = []
            group.append(field)
        chunks: list[bytes] = []
        scope = self._scope
        for resource, encoded_spans in groups.items():
            resource_field = self._resources.get(resource)
            if resource_field is None:
                resource_field = self._resource(resource)
            spans_bytes = b"".join(encoded_spans)
            scope_spans_size = len(scope) + len(spans_bytes)
            scope_spans_prefix = b"\x12" + varint(scope_spans_size)
            resource_spans_size = len(resource_field) + len(scope_spans_prefix) + scope_spans_size
            chunks += (b"\x0a", varint(resource_spans_size), resource_field, scope_spans_prefix, scope, spans_bytes)
        return b"".join(chunks)

    def _key_field(self, key: str) -> bytes:
        field = self._keys.get(key)
        if field is None:
            text = key if key.__class__ is str else safe_str(key)  # str keys, unless built by hand
            field = _delimited(b"\x0a", _utf8(text)) if text else b""  # proto3 leaves an empty string out
            if len(self._keys) >= CACHE_LIMIT:
                self._keys.clear()
            self._keys[key] = field
        return field

    def _key_value(self, key: str, value: Any) -> bytes:
        """A span attribute: the tagged, length-prefixed ``KeyValue`` (Span field 9);
        nothing for ``None``, which the OpenTelemetry SDK leaves out too."""
        if value is None:
            return b""
        pair = self._key_field(key) + _delimited(b"\x12", _any_value(value))
        return _delimited(b"\x4a", pair)

    def _cached_key_value(self, item: tuple[str, Any], cache: dict[tuple[str, Any], bytes]) -> bytes:
        encoded = self._key_value(item[0], item[1])
        # 0.0 and -0.0 are equal dict keys but differ on the wire: a zero float is not kept.
        if len(encoded) <= CACHE_ITEM_BYTES and (item[1] or item[1].__class__ is not float):
            if len(cache) >= CACHE_LIMIT:
                cache.clear()
            cache[item] = encoded
        return encoded

    def _attribute(self, tag: bytes, key: str, value: Any) -> bytes:
        """A ``KeyValue`` under another field tag (resource and event attributes)."""
        encoded = self._key_value(key, value)
        return tag + encoded[1:] if encoded else b""

    def _head(self, kind: str, name: str) -> bytes:
        """Span fields 5 and 6 and the tag of field 7, cached (an unknown kind is sent
        as ``internal``, and not cached)."""
        by_name = self._heads.get(kind)
        head = by_name.get(name) if by_name is not None else None
        if head is None:
            name_field = _delimited(b"\x2a", _utf8(name)) if name else b""
            head = name_field + bytes((0x30, KIND_NUMBERS.get(kind, 1), 0x39))
            if by_name is not None:
                # Kept however long: a name missing from the cache costs an exception per span.
                if self._heads_count >= CACHE_LIMIT or self._heads_bytes >= CACHE_NAME_BYTES:
                    for names in self._heads.values():
                        names.clear()
                    self._heads_count = self._heads_bytes = 0
                by_name[name] = head
                self._heads_count += 1
                self._heads_bytes += len(head)
        return head

    def _event(self, event: Event) -> bytes:
        name, time_unix_nano, attributes = event
        parts = [_FIXED64.pack(0x09, time_unix_nano & _U64) if time_unix_nano else b""]
        if name:
            parts.append(_delimited(b"\x12", _utf8(name)))
        for key, value in attributes.items():
            parts.append(self._attribute(b"\x1a", key, value))
        return _delimited(b"\x5a", b"".join(parts))

    @staticmethod
    def _error_status(message: str) -> bytes:
        body = (_delimited(b"\x12", _utf8(message)) if message else b"") + b"\x18\x02"
        return _delimited(b"\x7a", body)

    def _resource(self, resource: Resource) -> bytes:
        attributes = resource_attributes(resource, self.service, self.version)
        body = b"".join([self._attribute(b"\x0a", key, value) for key, value in attributes.items()])
        head = _delimited(b"\x0a", body)
        if len(self._resources) >= RESOURCE_CACHE_LIMIT:
            self._resources.clear()
        self._resources[resource] = head
        return head

    # -- OTLP/JSON -------------------------------------------------------------------------
    def json(self, spans: Sequence[SpanData]) -> bytes:
        """The request in OTLP/JSON."""
        return encode_json(self.json_document(spans))

    def json_document(self, spans: Sequence[SpanData]) -> dict[str, Any]:
        """The request as plain data, following the OTLP/JSON mapping: lowerCamelCase
        keys, ids as hex (not base64), 64-bit integers as decimal strings, enums as
        numbers, fields at their default value left out."""
        groups: dict[Resource, list[dict[str, Any]]] = {}
        extra = self.extra
        for s in spans:
            name, kind, tid, sid, pid, flags, tracestate, start, end, status, code, message, attrs, events, resource = s
            span: dict[str, Any] = {"traceId": tid, "spanId": sid}
            if tracestate:
                span["traceState"] = tracestate
            if pid:
                span["parentSpanId"] = pid
            if flags & 0xFF:
                span["flags"] = flags & 0xFF
            span["name"] = name
            span["kind"] = KIND_NUMBERS.get(kind, 1)
            span["startTimeUnixNano"] = str(start & _U64)
            span["endTimeUnixNano"] = str(end & _U64)
            attributes = _json_attributes(attrs)
            for key, getter in extra:
                value = safe_value(getter(s))
                if value is not None:
                    attributes.append({"key": key, "value": _json_value(value)})
            if attributes:
                span["attributes"] = attributes
            if events:
                span["events"] = [
                    {"timeUnixNano": str(e.time_unix_nano & _U64), "name": e.name, "attributes": _json_attributes(e.attributes)}
                    for e in events
                ]
            code_number = _status_code(status, code, message)
            span["status"] = (
                {"message": message, "code": code_number}
                if code_number == STATUS_ERROR and message
                else ({"code": code_number} if code_number else {})
            )
            groups.setdefault(resource, []).append(span)
        return {
            "resourceSpans": [
                {"resource": self._json_resource(resource), "scopeSpans": [{"scope": self._json_scope, "spans": group}]}
                for resource, group in groups.items()
            ]
        }

    def _json_resource(self, resource: Resource) -> dict[str, Any]:
        cached = self._json_resources.get(resource)
        if cached is None:
            cached = {"attributes": _json_attributes(resource_attributes(resource, self.service, self.version))}
            if len(self._json_resources) >= RESOURCE_CACHE_LIMIT:
                self._json_resources.clear()
            self._json_resources[resource] = cached
        return cached


# -- the collector's response ----------------------------------------------------------
def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & _U64, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` of each field of one message: an int for
    varint and fixed fields, the bytes of a length-delimited one."""
    pos, end = 0, len(data)
    while pos < end:
        tag, pos = _read_varint(data, pos)
        number, wire = tag >> 3, tag & 7
        value: int | bytes
        if wire == 0:
            value, pos = _read_varint(data, pos)
        elif wire == 1 or wire == 5:
            width = 8 if wire == 1 else 4
            if pos + width > end:
                raise ValueError("truncated fixed-width field")
            value = int.from_bytes(data[pos : pos + width], "little")
            pos += width
        elif wire == 2:
            size, pos = _read_varint(data, pos)
            if pos + size > end:
                raise ValueError("truncated length-delimited field")
            value = data[pos : pos + size]
            pos += size
        else:  # groups (3, 4) are not in this schema; 6 and 7 do not exist
            raise ValueError(f"unsupported wire type {wire}")
        if number == 0:
            raise ValueError("field number 0")
        yield number, wire, value


def read_partial_success(body: bytes) -> tuple[int, str]:
    """``(rejected_spans, error_message)`` of a protobuf ``ExportTraceServiceResponse``
    (``(0, "")`` when it has no partial success); :class:`ValueError` when it is not a
    valid message. A field that occurs twice counts as protobuf merges it: the last wins."""
    rejected, message = 0, ""
    for number, wire, value in _fields(body):
        if number == 1 and wire == 2 and isinstance(value, bytes):
            for inner, inner_wire, inner_value in _fields(value):
                if inner == 1 and inner_wire == 0 and isinstance(inner_value, int):
                    rejected = inner_value - (1 << 64) if inner_value > _INT64_MAX else inner_value
                elif inner == 2 and inner_wire == 2 and isinstance(inner_value, bytes):
                    message = inner_value.decode("utf-8", "replace")
    return rejected, message


def read_partial_success_json(body: bytes) -> tuple[int, str]:
    """The same from an OTLP/JSON response (``rejectedSpans`` may be a number or a string)."""
    document = json.loads(body)
    partial = (document.get("partialSuccess") or {}) if isinstance(document, dict) else {}
    if not isinstance(partial, dict):
        raise ValueError("partialSuccess is not an object")
    return int(partial.get("rejectedSpans", 0) or 0), str(partial.get("errorMessage", "") or "")
