"""What every web adapter shares, framework-free: options (excluded paths, captured
headers with redaction, hooks, ``traceparent`` in responses, the per-request span
budget), span names, OTel semantic-convention attributes and the status rules.

The adapters (``infratrace_asgi``, ``infratrace_django``, ``infratrace_flask``) only
translate their framework's request/response objects into these calls."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from ._budget import SpanBudget
from ._errors import ConfigError
from ._propagation import format_traceparent
from ._span import NonRecordingSpan, Span
from .logging import instrument as instrument_logging

__all__ = [
    "KNOWN_METHODS",
    "WebOptions",
    "finish_http_span",
    "http_span_name",
    "report_budget",
    "request_attributes",
    "set_route",
    "websocket_span_name",
]

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"})
DEFAULT_SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token", "x-csrftoken"}
)
REDACTED = "[REDACTED]"
# Query parameters whose value is redacted when query strings are recorded: a key that
# contains one of these (case-insensitive), such as access_token or api_key.
DEFAULT_SENSITIVE_QUERY_KEYS = frozenset({"token", "password", "passwd", "secret", "key", "auth", "signature", "sig"})
DEFAULT_SPAN_BUDGET = 1000

AnySpan = Span | NonRecordingSpan
RequestHook = Callable[[AnySpan, Any], None]
ResponseHook = Callable[[AnySpan, Any, Any], None]

WEB_OPTION_KEYS = (
    "excluded_paths",
    "request_headers",
    "response_headers",
    "sensitive_headers",
    "request_hook",
    "response_hook",
    "response_traceparent",
    "span_budget",
    "service",
    "record_query",
    "sensitive_query_keys",
    "log_correlation",
)


@dataclass(frozen=True)
class WebOptions:
    """Options every web adapter accepts (as keyword arguments, or as a mapping from
    the framework's settings via :meth:`from_mapping`)."""

    excluded_paths: tuple[re.Pattern[str], ...] = ()
    request_headers: frozenset[str] = frozenset()
    response_headers: frozenset[str] = frozenset()
    sensitive_headers: frozenset[str] = DEFAULT_SENSITIVE_HEADERS
    request_hook: RequestHook | None = None
    response_hook: ResponseHook | None = None
    response_traceparent: bool = False
    span_budget: int = DEFAULT_SPAN_BUDGET
    service: str = ""
    record_query: bool = False  # url.query: off by default (query strings carry tokens)
    sensitive_query_keys: frozenset[str] = DEFAULT_SENSITIVE_QUERY_KEYS
    log_correlation: bool = False  # trace ids in every log record (infratrace.logging)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(
        cls,
        options: Mapping[str, Any] | None,
        prefix: str,
        extra_keys: Iterable[str] = (),
        source: str | None = None,
    ) -> WebOptions:
        """Validate ``options``; an error names ``<prefix>.<key>``. Keys in
        ``extra_keys`` (adapter-specific) are kept unvalidated in ``.extra``. Hooks may
        be callables or ``"package.module:function"`` strings."""
        options = dict(options or {})
        extra_names = tuple(extra_keys)
        try:
            for key in options:
                if key not in WEB_OPTION_KEYS and key not in extra_names:
                    raise ConfigError(
                        f"{prefix}.{key}", options[key], "unknown key; valid keys: " + ", ".join((*WEB_OPTION_KEYS, *extra_names))
                    )
            web = cls(
                excluded_paths=_patterns(options.get("excluded_paths", ()), f"{prefix}.excluded_paths"),
                request_headers=_header_names(options.get("request_headers", ()), f"{prefix}.request_headers"),
                response_headers=_header_names(options.get("response_headers", ()), f"{prefix}.response_headers"),
                sensitive_headers=DEFAULT_SENSITIVE_HEADERS
                | _header_names(options.get("sensitive_headers", ()), f"{prefix}.sensitive_headers"),
                request_hook=_hook(options.get("request_hook"), f"{prefix}.request_hook"),
                response_hook=_hook(options.get("response_hook"), f"{prefix}.response_hook"),
                response_traceparent=_bool(options.get("response_traceparent", False), f"{prefix}.response_traceparent"),
                span_budget=_budget(options.get("span_budget", DEFAULT_SPAN_BUDGET), f"{prefix}.span_budget"),
                service=_str(options.get("service", ""), f"{prefix}.service"),
                record_query=_bool(options.get("record_query", False), f"{prefix}.record_query"),
                sensitive_query_keys=DEFAULT_SENSITIVE_QUERY_KEYS
                | _header_names(options.get("sensitive_query_keys", ()), f"{prefix}.sensitive_query_keys"),
                log_correlation=_bool(options.get("log_correlation", False), f"{prefix}.log_correlation"),
                extra={key: options[key] for key in extra_names if key in options},
            )
            if web.log_correlation:  # the adapter's own switch for what infratrace.logging.instrument() does
                instrument_logging()
            return web
        except ConfigError as exc:
            raise exc.with_source(source) if source else exc

    # -- per request ------------------------------------------------------------------
    def excluded(self, path: str) -> bool:
        return any(pattern.search(path) for pattern in self.excluded_paths)

    def new_budget(self) -> SpanBudget | None:
        """The request's span budget, activated; ``None`` when unlimited (0)."""
        return SpanBudget(self.span_budget).activate() if self.span_budget > 0 else None

    def header_attributes(self, direction: str, headers: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
        """``http.<direction>.header.<name>`` → list of values for the allow-listed
        headers; sensitive values are replaced by ``[REDACTED]``."""
        wanted = self.request_headers if direction == "request" else self.response_headers
        if not wanted:
            return {}
        out: dict[str, list[str]] = {}
        for name, value in headers:
            lower = name.lower()
            if lower in wanted:
                text = REDACTED if lower in self.sensitive_headers else value
                out.setdefault(f"http.{direction}.header.{lower}", []).append(text)
        return out

    def query_attribute(self, query: str) -> str | None:
        """``url.query`` for a request's query string: ``None`` unless ``record_query``
        is on, and then with the value of every parameter whose name contains a
        sensitive key (``token``, ``password``, ``secret``, ``key``, ``auth``,
        ``signature``… and ``sensitive_query_keys``) replaced by ``[REDACTED]``."""
        if not self.record_query or not query:
            return None
        return redact_query(query, self.sensitive_query_keys)

    def response_traceparent_header(self, span: AnySpan) -> tuple[str, str] | None:
        if not self.response_traceparent:
            return None
        return ("traceparent", format_traceparent(span))

    def run_request_hook(self, span: AnySpan, request: Any) -> None:
        if self.request_hook is not None:
            try:
                self.request_hook(span, request)
            except Exception as exc:  # a user hook must not break the request
                span.set_attribute("infratrace.hook_error", f"request_hook: {type(exc).__name__}: {exc}")

    def run_response_hook(self, span: AnySpan, request: Any, response: Any) -> None:
        if self.response_hook is not None:
            try:
                self.response_hook(span, request, response)
            except Exception as exc:
                span.set_attribute("infratrace.hook_error", f"response_hook: {type(exc).__name__}: {exc}")


# (method, route) -> name for known methods: as small as the app's route table.
_span_names: dict[tuple[str, str | None], str] = {}


def http_span_name(method: str, route: str | None) -> str:
    """``http:GET /users/{user_id}``, or ``http:GET`` when no route matched (raw paths
    would make names high-cardinality)."""
    name = _span_names.get((method, route))
    if name is None:
        normalized = normalize_method(method)
        name = f"http:{normalized} {route}" if route else f"http:{normalized}"
        if normalized == method and len(_span_names) < 10_000:
            _span_names[(method, route)] = name
    return name


def set_route(span: AnySpan, method: str, route: str, *, websocket: bool = False) -> None:
    """Name a server span after the route found once routing ran, and record it
    (``http.route`` and ``target``)."""
    span.name = websocket_span_name(route) if websocket else http_span_name(method, route)
    span.set_attributes({"http.route": route, "target": route})


def websocket_span_name(route: str | None) -> str:
    """``http:WEBSOCKET /ws/{room}`` (``http:WEBSOCKET`` when no route matched): one
    server span for a WebSocket connection's whole life, named alike by every adapter."""
    return f"http:WEBSOCKET {route}" if route else "http:WEBSOCKET"


def report_budget(span: AnySpan, budget: SpanBudget | None) -> None:
    """Record on the request's span how many spans its budget refused (if any)."""
    if budget is not None and budget.dropped:
        span.set_attribute("infratrace.spans_dropped", budget.dropped)


def normalize_method(method: str) -> str:
    upper = method.upper()
    return upper if upper in KNOWN_METHODS else "_OTHER"


def redact_query(query: str, sensitive: Iterable[str] = DEFAULT_SENSITIVE_QUERY_KEYS) -> str:
    """``query`` with the value of each parameter whose (URL-decoded, lower-cased) name
    contains one of ``sensitive`` replaced by ``[REDACTED]``; the rest kept as sent."""
    words = tuple(sensitive)
    parts = []
    for part in query.split("&"):
        name = part.partition("=")[0]
        lowered = unquote_plus(name).lower()
        parts.append(f"{name}={REDACTED}" if any(word in lowered for word in words) else part)
    return "&".join(parts)


def request_attributes(
    *,
    framework: str,
    method: str,
    path: str,
    scheme: str,
    route: str | None = None,
    server_address: str | None = None,
    server_port: int | None = None,
    client_address: str | None = None,
    user_agent: str | None = None,
    query: str | None = None,
    protocol_version: str | None = None,
    service: str = "",
) -> dict[str, Any]:
    """OTel HTTP server semantic-convention attributes plus infratrace's
    ``service``/``kind``/``target``/``module``/``operation``."""
    normalized = normalize_method(method)
    attrs: dict[str, Any] = {
        "kind": "http",
        "target": route or path,
        "module": framework,
        "operation": normalized,
        "http.request.method": normalized,
        "url.path": path,
        "url.scheme": scheme,
    }
    if service:
        attrs["service"] = service
    if normalized != method:
        attrs["http.request.method_original"] = method
    if route:
        attrs["http.route"] = route
    if query:
        attrs["url.query"] = query
    if server_address:
        attrs["server.address"] = server_address
    if server_port:
        attrs["server.port"] = server_port
    if client_address:
        attrs["client.address"] = client_address
    if user_agent:
        attrs["user_agent.original"] = user_agent
    if protocol_version:
        attrs["network.protocol.version"] = protocol_version
    return attrs


def finish_http_span(
    span: AnySpan,
    status_code: int | None,
    exc: BaseException | None = None,
    budget: SpanBudget | None = None,
) -> None:
    """Record the response status and end the span: an exception or a 5xx is an
    ``error``; a 4xx stays ``ok`` with the code recorded (OTel's server-span rule).
    Spans refused by the request's budget are recorded as ``infratrace.spans_dropped``
    (pass ``budget`` only when the span ends in the context that activated it; else
    call :func:`report_budget` and deactivate the budget where it was activated)."""
    try:
        if budget is not None:
            budget.deactivate()
            report_budget(span, budget)
        if status_code is not None:
            span.attributes["http.response.status_code"] = status_code
        if exc is not None:
            span.record_exception(exc)
            span.set_attribute("error.type", type(exc).__qualname__)
            span.end(code=status_code or 500)
        elif status_code is not None and status_code >= 500:
            span.set_attribute("error.type", str(status_code))
            span.end(status="error", code=status_code, message=f"HTTP {status_code}")
        else:
            span.end(code=status_code or 0)
    except Exception:
        try:
            span.end()
        except Exception:
            pass


# -- validation helpers -----------------------------------------------------------------


def _patterns(value: Any, key: str) -> tuple[re.Pattern[str], ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(key, value, "expected a list of regular expressions")
    out = []
    for index, item in enumerate(value):
        if isinstance(item, re.Pattern):
            out.append(item)
            continue
        if not isinstance(item, str):
            raise ConfigError(f"{key}[{index}]", item, "expected a regular expression (a string)")
        try:
            out.append(re.compile(item))
        except re.error as exc:
            raise ConfigError(f"{key}[{index}]", item, f"not a valid regular expression: {exc}") from None
    return tuple(out)


def _header_names(value: Any, key: str) -> frozenset[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise ConfigError(key, value, "expected a list of header names")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{key}[{index}]", item, "expected a header name (a string)")
    return frozenset(item.lower() for item in value)


def _hook(value: Any, key: str) -> Any:
    if value is None or callable(value):
        return value
    if isinstance(value, str) and ":" in value:
        module_name, _, attr = value.partition(":")
        try:
            target = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(key, value, f"cannot be imported: {exc}") from None
        if callable(target):
            return target
    raise ConfigError(key, value, 'expected a callable or a "package.module:function" string')


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, value, "expected true or false")
    return value


def _budget(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(key, value, "expected a whole number of spans per request >= 0 (0 = unlimited)")
    return value


def _str(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, value, "expected a string")
    return value
