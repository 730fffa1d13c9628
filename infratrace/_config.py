"""TOML configuration → validated, immutable objects.

Every check happens here, in ``load_config()`` (which ``configure()`` calls), driver
settings included: an error names the source, the key path, the value and what is
allowed, and no span is ever written under a half-valid config. ``check_config()``
runs the same checks without stopping at the first error (``infratrace check``): each
check reports its error through :func:`_reject`, which raises, or — under
``check_config()`` — records it and lets the check carry on with a safe value.
"""

from __future__ import annotations

import difflib
import os
import socket
import sys
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar, Union

from ._environment import PROPAGATOR_NAMES, Environment, read_environment
from ._errors import ConfigError
from ._fields import FIELD_HELP, field_getter, format_placeholders
from ._registry import driver_settings_schema
from ._settings import parse_settings
from ._units import DURATION_HELP, parse_duration

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "Config",
    "ConfigSource",
    "ConnectionConfig",
    "SampleConfig",
    "SampleRule",
    "check_config",
    "load_config",
]

_T = TypeVar("_T")

ConfigSource = Union[str, "os.PathLike[str]", Mapping[str, Any], None]

ENV_CONFIG = "INFRATRACE_CONFIG"
LOCAL_CONFIG = "infratrace.toml"  # looked for in the working directory when $INFRATRACE_CONFIG is unset
DEFAULTS = "<defaults>"  # the source of a configuration made when no file was found
WHERE_LOOKED = f"${ENV_CONFIG} is unset and there is no ./{LOCAL_CONFIG}"
DEFAULT_FORMAT = "%time% [%status%] %name% trace=%traceId% span=%spanId% cost=%costMs%ms"
DEFAULT_BUFFER = 1024
DEFAULT_TIMEOUT = 0.2
CONNECTION_KEYS = ("driver", "json", "sample", "buffer", "timeout", "overflow", "format", "flag", "fields", "setting")
SAMPLE_KEYS = ("rate", "sample", "error", "slow", "key", "parent", "salt", "pending_spans", "pending_traces", "rules")
SAMPLE_PARENT_MODES = ("honor", "ignore")
OVERFLOW_POLICIES = ("sync", "sample", "drop")
DEFAULT_PENDING_SPANS = 1000
DEFAULT_PENDING_TRACES = 100
SAMPLE_HASH_KEYS = ("trace_id", "span_id", "trace_span")
RULE_KEYS = ("name", "sample", "rate", "attrs")
RESOURCE_KEYS = ("service", "project", "profile", "role", "node", "attributes")
LIMIT_KEYS = ("attributes", "value_length", "list_items")


@dataclass(frozen=True)
class SampleRule:
    name: str
    ratio: float
    attrs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SampleConfig:
    rate: float = 1.0
    error: bool = True
    slow: float = 0.0  # seconds; 0: off
    key: str = "trace_id"
    parent: str = "honor"  # an incoming sampled flag decides ("ignore": the rules do)
    salt: str = ""  # "": a random salt per process
    pending_spans: int = DEFAULT_PENDING_SPANS  # held per trace for a tail decision
    pending_traces: int = DEFAULT_PENDING_TRACES  # traces held at once
    rules: tuple[SampleRule, ...] = ()


@dataclass(frozen=True)
class ConnectionConfig:
    """One ``[trace.<name>]`` connection, validated.

    ``settings`` is the driver's ``setting`` table checked against the driver's
    ``settings_schema`` (an instance of that dataclass, see :mod:`infratrace._settings`),
    or, for a driver without a schema, the table itself as a dict. ``setting`` is
    always the raw table."""

    name: str
    driver: str = "default"
    json: bool = False
    format: str = DEFAULT_FORMAT
    flag: str = ""
    fields: tuple[str, ...] | Mapping[str, str] | None = None
    buffer: int = DEFAULT_BUFFER
    timeout: float = DEFAULT_TIMEOUT
    overflow: str = ""  # "": the driver's own default (sync for local drivers, sample for others)
    sample: SampleConfig = field(default_factory=SampleConfig)
    setting: Mapping[str, Any] = field(default_factory=dict)
    resource: Mapping[str, Any] = field(default_factory=dict)
    source: str = DEFAULTS
    path: str = "trace"  # where it stands in the TOML: "trace" or "trace.<name>"
    # None when the config was made by hand: drivers then read ``setting`` themselves.
    settings: Any = None


@dataclass(frozen=True)
class Limits:
    """``[limits]``: what one span may carry; more is cut, and counted
    (``stats()["attribute_truncated_count"]``)."""

    attributes: int = 128  # attributes per span (and per event); the first ones are kept
    value_length: int = 8192  # characters of a text value (and of each text in a list)
    list_items: int = 1000  # items of a list value


@dataclass(frozen=True)
class Config:
    connections: tuple[ConnectionConfig, ...]
    resource: Mapping[str, Any]
    source: str
    limits: Limits = field(default_factory=Limits)
    enabled: bool = True  # False: INFRATRACE_DISABLED / OTEL_SDK_DISABLED — no spans at all
    propagators: tuple[str, ...] = PROPAGATOR_NAMES  # which of traceparent/tracestate and baggage travel


# -- errors: raised at once, or all collected -------------------------------------------

# Set by check_config() only: the errors found so far.
_collected: ContextVar[list[ConfigError] | None] = ContextVar("infratrace_config_errors", default=None)


def _reject(error: ConfigError) -> None:
    """Raise ``error``; under :func:`check_config`, record it and return, so the check
    carries on with a safe value and the rest of the configuration is still checked."""
    found = _collected.get()
    if found is None:
        raise error
    found.append(error)


def _checked(step: Callable[[], _T], fallback: _T) -> _T:
    """``step()``, or — when it raises a ``ConfigError`` under :func:`check_config` —
    ``fallback``, with the error recorded."""
    try:
        return step()
    except ConfigError as exc:
        _reject(exc)
        return fallback


# -- loading ------------------------------------------------------------------------


def _read_document(source: ConfigSource) -> tuple[Mapping[str, Any], str]:
    if source is None:
        env = os.environ.get(ENV_CONFIG, "").strip()
        if not env:
            local = Path(LOCAL_CONFIG)
            if local.is_file():  # ./infratrace.toml: found by every process started here
                return _parse_toml(_read_text(local), str(local.resolve())), str(local.resolve())
            return {}, DEFAULTS
        source = Path(env)
        try:
            readable = source.is_file()
        except (OSError, ValueError):  # a NUL byte, a name too long
            readable = False
        if not readable:
            raise ConfigError(ENV_CONFIG, env, "expected the path of a readable TOML file", "environment")
    if isinstance(source, Mapping):
        return source, "<mapping>"
    if isinstance(source, os.PathLike) or (isinstance(source, str) and _looks_like_path(source)):
        path = Path(source)
        return _parse_toml(_read_text(path), str(path)), str(path)
    if isinstance(source, str):
        return _parse_toml(source, "<string>"), "<string>"
    raise ConfigError("<source>", source, "expected a TOML file path, a TOML string or a mapping", "configure()")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("<file>", str(path), f"cannot be read ({exc.strerror or exc})") from None
    except (ValueError, UnicodeDecodeError) as exc:  # a NUL byte in the name; not UTF-8 text
        raise ConfigError("<file>", str(path), f"cannot be read ({exc})") from None


def _looks_like_path(text: str) -> bool:
    return "\n" not in text and "=" not in text and "[" not in text and bool(text.strip())


def _parse_toml(text: str, source: str) -> Mapping[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("<toml>", text if len(text) < 80 else text[:77] + "...", f"not valid TOML: {exc}", source) from None


def load_config(source: ConfigSource = None) -> Config:
    """Read and validate a configuration: a TOML file path, a TOML string, a parsed
    mapping (``{"trace": {...}, "infratrace": {...}}``), or — with ``None`` — the file
    named by ``$INFRATRACE_CONFIG``, else ``./infratrace.toml``, else the defaults (one
    console connection; ``Config.source`` is then ``"<defaults>"``). Keys outside ``[trace]``,
    ``[infratrace]`` and ``[limits]`` are ignored, so an application's own config file
    can be used. The environment variables of :mod:`infratrace._environment` are
    applied here too."""
    document, origin = _read_document(source)
    try:
        return _build(document, origin)
    except ConfigError as exc:
        raise exc.with_source(origin) from None


def check_config(source: ConfigSource = None) -> tuple[Config | None, list[ConfigError]]:
    """:func:`load_config` without stopping at the first error: ``(config, [])`` when
    the source is valid, else ``(None, errors)`` with every error found, each the one
    ``configure()`` would raise for it. A source that cannot be read or parsed is one
    error."""
    try:
        document, origin = _read_document(source)
    except ConfigError as exc:
        return None, [exc]
    found: list[ConfigError] = []
    token = _collected.set(found)
    try:
        config: Config | None = _checked(lambda: _build(document, origin), None)
    finally:
        _collected.reset(token)
    return (None if found else config), [error.with_source(origin) for error in found]


def _limits(table: Any) -> Limits:
    if table is None:
        return Limits()
    if not isinstance(table, Mapping):
        _reject(ConfigError("limits", table, "expected a table ([limits]) with " + ", ".join(LIMIT_KEYS)))
        return Limits()
    values: dict[str, int] = {}
    for key, value in table.items():
        if key not in LIMIT_KEYS:
            _reject(ConfigError(f"limits.{key}", value, "unknown key; valid keys: " + ", ".join(LIMIT_KEYS)))
        elif isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000_000:
            _reject(ConfigError(f"limits.{key}", value, "expected a whole number >= 1"))
        else:
            values[key] = value
    return Limits(**values)


TOP_LEVEL_TABLES = ("trace", "infratrace", "limits")


def _misspelt_tables(document: Mapping[str, Any]) -> None:
    """Other tables are the application's own and are ignored, but one whose name is
    a near miss of ours (``[tracing]``, ``[limit]``) is a mistake that would otherwise
    leave tracing on its defaults without a word."""
    for key, value in document.items():
        if key in TOP_LEVEL_TABLES or not isinstance(key, str) or not _looks_like_ours(value):
            continue
        match = difflib.get_close_matches(key.lower(), TOP_LEVEL_TABLES, n=1, cutoff=0.6)
        if match:
            _reject(ConfigError(key, value, f"unknown table; did you mean [{match[0]}]?"))


_OUR_KEYS = frozenset(CONNECTION_KEYS) | frozenset(RESOURCE_KEYS) | frozenset(LIMIT_KEYS)


def _looks_like_ours(value: Any, depth: int = 0) -> bool:
    """A table with keys of ours (``driver``, ``sample``, ``project``…), itself or in
    a sub-table: an application's own ``[tracker]`` table is left alone."""
    if not isinstance(value, Mapping):
        return False
    if any(key in _OUR_KEYS for key in value):
        return True
    return depth < 1 and any(_looks_like_ours(sub, depth + 1) for sub in value.values())


def _build(document: Mapping[str, Any], origin: str) -> Config:
    _misspelt_tables(document)
    env = _checked(read_environment, Environment())
    resource = _resource(document.get("infratrace"), env)
    limits = _limits(document.get("limits"))
    trace = document.get("trace")
    if trace is None:
        trace = {}
    if not isinstance(trace, Mapping):
        _reject(ConfigError("trace", trace, "expected a table ([trace])"))
        trace = {}
    top: dict[str, Any] = {}
    named: dict[str, Mapping[str, Any]] = {}
    for key, value in trace.items():
        if key in CONNECTION_KEYS:
            top[key] = value
        elif isinstance(value, Mapping):
            named[key] = value
        else:
            _reject(
                ConfigError(
                    f"trace.{key}",
                    value,
                    "unknown key; a connection is a table ([trace.<name>]) and the keys of one are " + ", ".join(CONNECTION_KEYS),
                )
            )
    connections: list[ConnectionConfig] = []
    if top or not named:
        if "default" in named:
            _reject(
                ConfigError(
                    "trace.default",
                    dict(named["default"]),
                    "keys directly under [trace] already form the connection named 'default'; "
                    "move them into [trace.default] or rename the table",
                )
            )
        connections.append(_connection("default", top, "trace", origin, resource, env))
    for name, table in named.items():
        connections.append(_connection(name, table, f"trace.{name}", origin, resource, env))
    return Config(tuple(connections), resource, origin, limits, enabled=not env.disabled, propagators=env.propagators)


def _connection(
    name: str, table: Mapping[str, Any], prefix: str, origin: str, resource: Mapping[str, Any], env: Environment
) -> ConnectionConfig:
    for key in table:
        if key not in CONNECTION_KEYS:
            _reject(ConfigError(f"{prefix}.{key}", table[key], "unknown key; valid keys: " + ", ".join(CONNECTION_KEYS)))
    driver = table.get("driver", "default")
    schema: type[Any] | None = None
    if not isinstance(driver, str) or not driver:
        _reject(ConfigError(f"{prefix}.driver", driver, "expected a driver name (a string)"))
    else:
        # An unknown driver fails here, not when configure() builds it.
        schema = _checked(lambda: driver_settings_schema(driver, f"{prefix}.driver"), None)
    json_ = table.get("json", False)
    if not isinstance(json_, bool):
        _reject(ConfigError(f"{prefix}.json", json_, "expected true or false"))
    flag = table.get("flag", "")
    if not isinstance(flag, str):
        _reject(ConfigError(f"{prefix}.flag", flag, "expected a string"))
    fmt = table.get("format", DEFAULT_FORMAT)
    if not isinstance(fmt, str):
        _reject(ConfigError(f"{prefix}.format", fmt, "expected a string with %field% placeholders"))
    else:
        for placeholder in format_placeholders(fmt):
            if field_getter(placeholder) is None:
                _reject(ConfigError(f"{prefix}.format", fmt, f"unknown placeholder %{placeholder}%; expected {FIELD_HELP}"))
    buffer = table.get("buffer", DEFAULT_BUFFER)
    if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
        _reject(ConfigError(f"{prefix}.buffer", buffer, "expected a whole number of spans >= 1"))
    timeout = _duration(table, "timeout", prefix, DEFAULT_TIMEOUT)
    if timeout <= 0:
        _reject(ConfigError(f"{prefix}.timeout", table.get("timeout"), f"expected a positive duration: {DURATION_HELP}"))
    overflow = table.get("overflow", "")
    if overflow != "" and overflow not in OVERFLOW_POLICIES:
        _reject(ConfigError(f"{prefix}.overflow", overflow, "expected one of " + ", ".join(f'"{p}"' for p in OVERFLOW_POLICIES)))
    setting = table.get("setting", {})
    if not isinstance(setting, Mapping):
        _reject(ConfigError(f"{prefix}.setting", setting, "expected a table of driver options"))
        setting = {}
    settings = dict(setting) if schema is None else parse_settings(schema, setting, f"{prefix}.setting", errors=_collected.get())
    return ConnectionConfig(
        name=name,
        driver=driver,
        json=json_,
        format=fmt,
        flag=flag,
        fields=_checked(lambda: _fields(table.get("fields"), f"{prefix}.fields"), None),
        buffer=buffer,
        timeout=timeout,
        overflow=overflow,
        sample=_environment_sample(
            _checked(lambda: _sample(table.get("sample", env.default_sample or 1.0), f"{prefix}.sample"), SampleConfig()), env
        ),
        setting=dict(setting),
        resource=resource,
        source=origin,
        path=prefix,
        settings=settings,
    )


def _environment_sample(sample: SampleConfig, env: Environment) -> SampleConfig:
    """``INFRATRACE_SAMPLE_RATE`` and ``INFRATRACE_SAMPLE_PARENT`` override every
    connection's rate and parent mode."""
    if env.sample_rate is not None:
        sample = replace(sample, rate=env.sample_rate)
    if env.sample_parent is not None:
        sample = replace(sample, parent=env.sample_parent)
    return sample


def _duration(table: Mapping[str, Any], key: str, prefix: str, default: float) -> float:
    if key not in table:
        return default
    try:
        return parse_duration(table[key])
    except ValueError:
        _reject(ConfigError(f"{prefix}.{key}", table[key], f"expected {DURATION_HELP}"))
        return default


def _fields(value: Any, key: str) -> tuple[str, ...] | dict[str, str] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        out: dict[str, str] = {}
        for src, dst in value.items():
            if field_getter(src) is None:
                _reject(ConfigError(f"{key}.{src}", dst, f"unknown field {src!r}; expected {FIELD_HELP}"))
            elif not isinstance(dst, str) or not dst:
                _reject(ConfigError(f"{key}.{src}", dst, "expected the new name of the field (a non-empty string)"))
            else:
                out[src] = dst
        return out
    if isinstance(value, (list, tuple)):
        for index, name in enumerate(value):
            if not isinstance(name, str) or field_getter(name) is None:
                _reject(ConfigError(f"{key}[{index}]", name, f"unknown field; expected {FIELD_HELP}"))
        if not value:
            _reject(ConfigError(key, value, "expected at least one field name"))
        return tuple(value)
    _reject(ConfigError(key, value, 'expected a list of field names or a table of renames { old = "new" }'))
    return None


def _ratio(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN too
        _reject(ConfigError(key, value, "expected a number between 0 and 1"))
        return 1.0
    return min(1.0, max(0.0, float(value)))


def _sample(value: Any, key: str) -> SampleConfig:
    if not isinstance(value, Mapping):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _reject(ConfigError(key, value, "expected a number between 0 and 1 or a table with rate/error/key/rules"))
            return SampleConfig()
        return SampleConfig(rate=_ratio(value, key))
    for sub in value:
        if sub not in SAMPLE_KEYS:
            _reject(ConfigError(f"{key}.{sub}", value[sub], "unknown key; valid keys: " + ", ".join(SAMPLE_KEYS)))
    if "rate" in value and "sample" in value:
        _reject(ConfigError(f"{key}.sample", value["sample"], "'sample' is an alias of 'rate'; set only one"))
    rate_key = "rate" if "rate" in value else "sample"
    rate = _ratio(value.get(rate_key, 1.0), f"{key}.{rate_key}")
    error = value.get("error", True)
    if not isinstance(error, bool):
        _reject(ConfigError(f"{key}.error", error, "expected true or false"))
    hash_key = value.get("key", "trace_id")
    if hash_key not in SAMPLE_HASH_KEYS:
        _reject(ConfigError(f"{key}.key", hash_key, "expected one of " + ", ".join(SAMPLE_HASH_KEYS)))
    rules_value = value.get("rules", [])
    if not isinstance(rules_value, (list, tuple)):
        _reject(ConfigError(f"{key}.rules", rules_value, "expected a list of tables { name = ..., sample = ... }"))
        rules_value = []
    rules = tuple(_rule(rule, f"{key}.rules[{i}]") for i, rule in enumerate(rules_value))
    slow = _duration(value, "slow", key, 0.0)
    if slow < 0 or slow != slow or slow == float("inf"):
        _reject(ConfigError(f"{key}.slow", value.get("slow"), f"expected a positive duration: {DURATION_HELP}"))
    parent = value.get("parent", "honor")
    if parent not in SAMPLE_PARENT_MODES:
        _reject(ConfigError(f"{key}.parent", parent, 'expected "honor" (an incoming sampled flag decides) or "ignore"'))
    salt = value.get("salt", "")
    if not isinstance(salt, str):
        _reject(ConfigError(f"{key}.salt", salt, "expected a string (the same in every process that must agree)"))
    limits = {}
    for name, default in (("pending_spans", DEFAULT_PENDING_SPANS), ("pending_traces", DEFAULT_PENDING_TRACES)):
        limit = value.get(name, default)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            _reject(ConfigError(f"{key}.{name}", limit, "expected a whole number >= 1"))
        limits[name] = limit
    return SampleConfig(rate=rate, error=error, slow=slow, key=hash_key, parent=parent, salt=salt, rules=rules, **limits)


def _rule(rule: Any, key: str) -> SampleRule:
    if not isinstance(rule, Mapping):
        _reject(ConfigError(key, rule, 'expected a table { name = "http:*", sample = 0.1, attrs = { ... } }'))
        return SampleRule("", 1.0)
    for sub in rule:
        if sub not in RULE_KEYS:
            _reject(ConfigError(f"{key}.{sub}", rule[sub], "unknown key; valid keys: " + ", ".join(RULE_KEYS)))
    name = rule.get("name", "")
    if not isinstance(name, str):
        _reject(ConfigError(f"{key}.name", name, "expected a span name or a glob (fnmatch: *, ?, [...])"))
    if "sample" not in rule and "rate" not in rule:
        _reject(ConfigError(f"{key}.sample", None, "a rule needs a sample ratio between 0 and 1"))
    ratio_key = "sample" if "sample" in rule else "rate"
    ratio = _ratio(rule.get(ratio_key, 1.0), f"{key}.{ratio_key}")
    attrs = rule.get("attrs", {})
    if not isinstance(attrs, Mapping):
        _reject(ConfigError(f"{key}.attrs", attrs, "expected a table of attribute = value"))
        attrs = {}
    return SampleRule(name, ratio, tuple((str(k), _attr_text(v)) for k, v in attrs.items()))


def _attr_text(value: Any) -> str:
    """Attribute comparison is on strings; TOML true must equal Python True."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _resource(table: Any, env: Environment) -> dict[str, Any]:
    if table is None:
        table = {}
    if not isinstance(table, Mapping):
        _reject(ConfigError("infratrace", table, "expected a table ([infratrace]) with " + ", ".join(RESOURCE_KEYS)))
        table = {}
    for key, value in table.items():
        if key not in RESOURCE_KEYS:
            _reject(ConfigError(f"infratrace.{key}", value, "unknown key; valid keys: " + ", ".join(RESOURCE_KEYS)))
        elif key != "attributes" and not isinstance(value, str):
            _reject(ConfigError(f"infratrace.{key}", value, "expected a string"))
    extra = table.get("attributes", {})
    if not isinstance(extra, Mapping):
        _reject(ConfigError("infratrace.attributes", extra, "expected a table of resource attributes"))
        extra = {}
    table = {**table, **(env.resource_overrides or {})}
    otel = env.resource_attributes or {}
    service = table.get("service") or env.service_name or otel.get("service.name") or table.get("project") or _program_name()
    resource: dict[str, Any] = {**otel, **extra}
    resource.update(
        {
            "service.name": service,
            "project": table.get("project") or service,
            "profile": table.get("profile") or "default",
            "node": table.get("node") or socket.gethostname(),
        }
    )
    if table.get("role"):
        resource["role"] = table["role"]
    return resource


def _program_name() -> str:
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    name = Path(argv0).stem if argv0 and argv0 != "-c" else ""
    return name or "python"
