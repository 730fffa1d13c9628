"""The adapter's options: what ``instrument(**options)`` accepts, validated once."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from infratrace import ConfigError

__all__ = ["CeleryOptions", "ConfigSource", "TaskNames", "config_source"]

# What infratrace.configure() accepts: a TOML path, a TOML string or a parsed mapping.
ConfigSource = Union[str, "os.PathLike[str]", Mapping[str, Any], None]

OPTION_KEYS = (
    "service",
    "propagate",
    "no_propagate",
    "excluded_tasks",
    "config",
    "configure_worker",
    "flush_timeout",
    "span_budget",
)
DEFAULT_SPAN_BUDGET = 1000
# What infratrace.configure(None) reads when $INFRATRACE_CONFIG is unset: the file of
# this name in the working directory.
LOCAL_CONFIG = "infratrace.toml"


class TaskNames:
    """A set of task-name patterns: exact names, or prefixes when they end in ``*``
    (the same rule as the sampler's rule names). Answers are cached per name, since a
    worker only ever sees its few registered task names."""

    __slots__ = ("_cache", "_exact", "_prefixes")

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        patterns = tuple(patterns)
        self._exact = frozenset(p for p in patterns if not p.endswith("*"))
        self._prefixes = tuple(p[:-1] for p in patterns if p.endswith("*"))
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self._exact or self._prefixes)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        hit = self._cache.get(name)
        if hit is None:
            hit = name in self._exact or name.startswith(self._prefixes)
            if len(self._cache) < 4096:
                self._cache[name] = hit
        return hit


@dataclass(frozen=True)
class CeleryOptions:
    """``service``: infratrace's ``service`` attribute (default: the app's ``main`` name,
    else ``"celery"``). ``propagate``: write ``traceparent`` into messages (default on);
    ``no_propagate``: task names (``*`` = prefix) for which it is not written or read,
    beside the task attribute ``infratrace_propagate = False``. ``excluded_tasks``: task
    names that get no spans at all. ``config``: the TOML (path, string or mapping) the
    worker and beat configure infratrace from — default ``app.conf.infratrace``, else
    ``$INFRATRACE_CONFIG``, else ``./infratrace.toml`` (what ``infratrace.configure()``
    finds); with none of them the adapter leaves the configuration alone, and the first
    span says once on stderr that none was found.
    ``configure_worker=False`` never configures. ``flush_timeout``: seconds a stopping
    worker waits for its spans to be written. ``span_budget``: most spans one task
    execution may begin (0 = no limit)."""

    service: str = ""
    propagate: bool = True
    no_propagate: TaskNames = field(default_factory=TaskNames)
    excluded_tasks: TaskNames = field(default_factory=TaskNames)
    config: ConfigSource = None
    configure_worker: bool = True
    flush_timeout: float = 10.0
    span_budget: int = DEFAULT_SPAN_BUDGET

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> CeleryOptions:
        """Validate ``instrument()``'s keyword arguments; a :class:`ConfigError` names
        the option, the bad value and what is allowed."""
        unknown = sorted(set(options) - set(OPTION_KEYS))
        if unknown:
            raise ConfigError(_key(unknown[0]), options[unknown[0]], f"unknown option; known: {', '.join(OPTION_KEYS)}")
        values = dict(options)
        for key in ("no_propagate", "excluded_tasks"):
            if key in values:
                values[key] = TaskNames(_names(key, values[key]))
        if "flush_timeout" in values:
            timeout = values["flush_timeout"]
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
                raise ConfigError(_key("flush_timeout"), timeout, "expected seconds >= 0")
            values["flush_timeout"] = float(timeout)
        if "span_budget" in values:
            budget = values["span_budget"]
            if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
                raise ConfigError(_key("span_budget"), budget, "expected an int >= 0 (0 = no limit)")
        for key in ("propagate", "configure_worker"):
            if key in values and not isinstance(values[key], bool):
                raise ConfigError(_key(key), values[key], "expected True or False")
        if "service" in values and not isinstance(values["service"], str):
            raise ConfigError(_key("service"), values["service"], "expected a string")
        return cls(**values)


def _key(name: str) -> str:
    return f"infratrace_celery.instrument({name}=...)"


def config_source(options: CeleryOptions, app: Any) -> tuple[bool, ConfigSource]:
    """Which configuration the worker/beat should load: ``(False, None)`` when the
    adapter must not configure infratrace itself."""
    if not options.configure_worker:
        return False, None
    if options.config is not None:
        return True, options.config
    from_app = None
    if app is not None:
        try:
            from_app = app.conf.get("infratrace")
        except Exception:
            from_app = None
    if from_app is not None:
        return True, from_app
    if os.environ.get("INFRATRACE_CONFIG", "").strip() or os.path.isfile(LOCAL_CONFIG):
        return True, None  # infratrace.configure(None) finds it, as every other process does
    return False, None


def _names(key: str, value: Any) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else value
    try:
        names = tuple(names)
    except TypeError:
        raise ConfigError(_key(key), value, "expected a list of task names")
    for name in names:
        if not isinstance(name, str):
            raise ConfigError(_key(key), value, "task names are strings ('*' at the end = prefix)")
    return names
