# mypy: disable-error-code="import-untyped"
"""``settings.INFRATRACE_DJANGO`` → validated options, read once and cached.

The web options every adapter shares (excluded paths, headers, hooks, response
``traceparent``, span budget, service) are validated by :class:`infratrace.instrumentation.WebOptions`;
this module adds and validates the Django-only keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infratrace import ConfigError
from infratrace.instrumentation import WebOptions

__all__ = ["DEFAULT_SIGNAL_DENY", "DjangoOptions", "django_options", "reset_options"]

SETTING = "INFRATRACE_DJANGO"
# Per-instance (model __init__) and per-request noise: one span each would dwarf the rest.
# The autoreloader's: runserver's watching process serves no request, and its
# autoreload_started would be a trace of its own per start.
DEFAULT_SIGNAL_DENY = (
    "pre_init",
    "post_init",
    "request_started",
    "request_finished",
    "setting_changed",
    "autoreload_started",
    "file_changed",
)
DJANGO_KEYS = ("signals", "signal_allow", "signal_deny", "middleware_timings", "database_spans", "database_root_spans")


@dataclass(frozen=True)
class DjangoOptions:
    web: WebOptions
    signals: bool = True
    signal_allow: tuple[str, ...] = ()
    signal_deny: tuple[str, ...] = DEFAULT_SIGNAL_DENY
    middleware_timings: bool = False
    database_spans: bool = True  # db: spans for every query under a current span
    database_root_spans: bool = False  # and for queries with no current span, each a trace

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | None, source: str | None = None) -> DjangoOptions:
        """Validate a mapping shaped like ``settings.INFRATRACE_DJANGO``; a
        :class:`infratrace.ConfigError` names ``INFRATRACE_DJANGO.<key>``."""
        if options is not None and not isinstance(options, Mapping):
            raise ConfigError(SETTING, options, "expected a dict of options")
        web = WebOptions.from_mapping(options, prefix=SETTING, extra_keys=DJANGO_KEYS, source=source)
        extra = web.extra
        try:
            return cls(
                web=web,
                signals=_bool(extra.get("signals", True), "signals"),
                signal_allow=_names(extra.get("signal_allow", ()), "signal_allow"),
                signal_deny=_names(extra.get("signal_deny", DEFAULT_SIGNAL_DENY), "signal_deny"),
                middleware_timings=_bool(extra.get("middleware_timings", False), "middleware_timings"),
                database_spans=_bool(extra.get("database_spans", True), "database_spans"),
                database_root_spans=_bool(extra.get("database_root_spans", False), "database_root_spans"),
            )
        except ConfigError as exc:
            raise exc.with_source(source) if source else exc


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{SETTING}.{key}", value, "expected True or False")
    return value


def _names(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise ConfigError(f"{SETTING}.{key}", value, 'expected a list of signal names ("post_save", "user_*")')
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{SETTING}.{key}[{index}]", item, "expected a signal name (a string)")
    return tuple(value)


_cached: DjangoOptions | None = None


def django_options() -> DjangoOptions:
    """The options from ``settings.INFRATRACE_DJANGO`` (validated on first use)."""
    global _cached
    if _cached is None:
        from django.conf import settings

        _cached = DjangoOptions.from_mapping(getattr(settings, SETTING, None), source="Django settings")
    return _cached


def reset_options() -> None:
    """Forget the cached options (``setting_changed`` calls this, e.g. under
    ``override_settings``); middleware built afterwards reads them again."""
    global _cached
    _cached = None
