"""infratrace — tracing for web applications and task queues.

    import infratrace
    infratrace.configure("infratrace.toml")
    with infratrace.begin("service:user.login", infratrace.trace_attrs("user", "service", "login")):
        ...

Spans are written through a buffered, sampled, multi-connection pipeline (console,
rotating file, OTLP, GreptimeDB); see the README and docs/.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import _tracer, baggage
from ._budget import SpanBudget, span_budget
from ._config import Config, ConfigSource, ConnectionConfig, SampleConfig, SampleRule, load_config
from ._decorators import method, service, traced, trigger
from ._errors import ConfigError, InfratraceError, MissingExtraError
from ._fields import DEFAULT_FIELDS
from ._propagation import extract, extract_baggage, format_traceparent, inject, parse_traceparent
from ._registry import Driver, DriverFactory, available_drivers, register_driver
from ._span import KINDS, NonRecordingSpan, Span, SpanContext, attach, detach
from ._spandata import Event, Resource, SpanData
from ._tracer import TraceHook, Tracer, get_hook, set_hook, trace_attrs

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_FIELDS",
    "KINDS",
    "Config",
    "ConfigError",
    "ConfigSource",
    "ConnectionConfig",
    "Driver",
    "DriverFactory",
    "Event",
    "InfratraceError",
    "MissingExtraError",
    "NonRecordingSpan",
    "Resource",
    "SampleConfig",
    "SampleRule",
    "Span",
    "SpanBudget",
    "SpanContext",
    "SpanData",
    "TraceHook",
    "Tracer",
    "__version__",
    "attach",
    "available_drivers",
    "baggage",
    "begin",
    "configure",
    "current_span",
    "detach",
    "extract",
    "extract_baggage",
    "force_flush",
    "format_traceparent",
    "get_hook",
    "inject",
    "load_config",
    "method",
    "parse_traceparent",
    "register_driver",
    "service",
    "set_hook",
    "shutdown",
    "span_budget",
    "start_span",
    "stats",
    "trace",
    "trace_attrs",
    "traced",
    "trigger",
]


def configure(source: ConfigSource = None) -> Config:
    """Configure tracing from a TOML file path, a TOML string or a parsed mapping
    (``None``: the file named by ``$INFRATRACE_CONFIG``, else one console connection).

    Validates everything first (raising :class:`ConfigError` naming the key), then
    swaps in the new connections; the old ones are flushed and closed. Returns the
    validated configuration."""
    config = load_config(source)
    _tracer._hook.configure(config)
    return config


def begin(
    name: str,
    attrs: Mapping[str, Any] | None = None,
    *,
    kind: str | None = None,
    parent: Span | NonRecordingSpan | SpanContext | None = None,
) -> Span | NonRecordingSpan:
    """Begin a span; it is the current span until it ends. Use it as a context manager
    (``with``/``async with``) or call ``.end()``. ``kind`` is one of ``internal server
    client producer consumer`` (default: implied by ``attrs["kind"]``); ``parent``
    defaults to the current span (pass an :func:`extract`-ed context to continue a
    remote trace)."""
    return _tracer._hook.begin(name, attrs, kind=kind, parent=parent)  # type: ignore[no-any-return]


def start_span(
    name: str,
    attrs: Mapping[str, Any] | None = None,
    *,
    kind: str | None = None,
    parent: Span | NonRecordingSpan | SpanContext | None = None,
) -> Span | NonRecordingSpan:
    """Begin a span without making it the current span (for work that outlives the
    caller's context, like a streamed response body)."""
    return _tracer._hook.start_span(name, attrs, kind=kind, parent=parent)  # type: ignore[no-any-return]


def trace(name: str, attrs: Mapping[str, Any] | None = None) -> Span | NonRecordingSpan:
    """Record a one-shot event span (begun and ended at once) as a child of the current
    span. ``attrs["status"] = "error"`` with ``attrs["error"]`` marks it as failed."""
    return _tracer._hook.trace(name, attrs)  # type: ignore[no-any-return]


def current_span() -> Span | NonRecordingSpan | None:
    """The current span of this thread / asyncio task, or ``None``."""
    return _tracer._hook.current_span()  # type: ignore[no-any-return]


def stats() -> dict[str, Any]:
    """Runtime figures: queue length/capacity, queued, sync fallbacks,
    flushes, write errors, drops, the dynamic sample factor, and per connection
    ``written``/``sampled_out``/``dropped`` counts."""
    return _tracer._hook.stats()


def force_flush(timeout: float | None = 30.0) -> bool:
    """Write every span ended so far; ``False`` when ``timeout`` seconds ran out."""
    return _tracer._hook.force_flush(timeout)


def shutdown(timeout: float | None = 30.0) -> bool:
    """Flush and close every connection (also run at interpreter exit)."""
    return _tracer._hook.shutdown(timeout)
