"""The environment variables a deployment sets instead of editing TOML.

Read in one place, by :func:`infratrace.load_config` (so ``configure()`` and
``infratrace check`` see the same), each checked like a TOML key: a bad value is a
:class:`~infratrace.ConfigError` naming the variable, its value and what is valid.

Two families, two precedences (docs/configuration.md, "Environment variables"):

- ``INFRATRACE_*`` are infratrace's own and **override** the TOML file: they are how a
  deployment changes one setting of a shipped config;
- ``OTEL_*`` (OpenTelemetry's names, where they mean something here) **fill in** what
  the TOML file leaves unset, as OpenTelemetry's SDK lets code-given settings win over
  its environment: platforms often set them for every process of a host.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from ._errors import ConfigError

__all__ = ["Environment", "disabled_by_environment", "read_environment"]

ENV = "environment"
PROPAGATOR_NAMES = ("tracecontext", "baggage")
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")
# INFRATRACE_<NAME> → the [infratrace] key it overrides.
RESOURCE_VARIABLES = {
    "INFRATRACE_SERVICE": "service",
    "INFRATRACE_PROJECT": "project",
    "INFRATRACE_PROFILE": "profile",
    "INFRATRACE_ROLE": "role",
    "INFRATRACE_NODE": "node",
}


@dataclass(frozen=True)
class Environment:
    """What the environment asks for; ``None`` where it says nothing."""

    disabled: bool = False
    propagators: tuple[str, ...] = PROPAGATOR_NAMES
    resource_overrides: Mapping[str, str] | None = None  # INFRATRACE_SERVICE…: win over [infratrace]
    service_name: str = ""  # OTEL_SERVICE_NAME: when [infratrace] has no service
    resource_attributes: Mapping[str, str] | None = None  # OTEL_RESOURCE_ATTRIBUTES: under [infratrace.attributes]
    sample_rate: float | None = None  # INFRATRACE_SAMPLE_RATE: every connection's rate
    sample_parent: str | None = None  # INFRATRACE_SAMPLE_PARENT: every connection's parent mode
    default_sample: Mapping[str, Any] | None = None  # OTEL_TRACES_SAMPLER: a connection's [sample] when it has none


def read_environment(environ: Mapping[str, str] | None = None) -> Environment:
    env = os.environ if environ is None else environ
    disabled = _flag(env, "INFRATRACE_DISABLED") or _flag(env, "OTEL_SDK_DISABLED")
    overrides = {key: env[var].strip() for var, key in RESOURCE_VARIABLES.items() if env.get(var, "").strip()}
    return Environment(
        disabled=disabled,
        propagators=_propagators(env),
        resource_overrides=overrides or None,
        service_name=env.get("OTEL_SERVICE_NAME", "").strip(),
        resource_attributes=_resource_attributes(env.get("OTEL_RESOURCE_ATTRIBUTES", "")),
        sample_rate=_number(env, "INFRATRACE_SAMPLE_RATE"),
        sample_parent=_parent(env),
        default_sample=_sampler(env),
    )


def disabled_by_environment() -> bool:
    """Whether ``INFRATRACE_DISABLED``/``OTEL_SDK_DISABLED`` switch tracing off, read
    when the tracer is created (before any configuration). Never raises: a bad value
    is reported by the configuration that follows."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("INFRATRACE_DISABLED", "OTEL_SDK_DISABLED"))


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(name, env[name], "expected true or false", ENV)


def _propagators(env: Mapping[str, str]) -> tuple[str, ...]:
    for name in ("INFRATRACE_PROPAGATORS", "OTEL_PROPAGATORS"):
        raw = env.get(name, "").strip()
        if not raw:
            continue
        chosen = [part.strip().lower() for part in raw.split(",") if part.strip()]
        if chosen == ["none"]:
            return ()
        for part in chosen:
            if part not in PROPAGATOR_NAMES:
                raise ConfigError(name, raw, 'expected a comma-separated list of "tracecontext" and "baggage", or "none"', ENV)
        return tuple(p for p in PROPAGATOR_NAMES if p in chosen)
    return PROPAGATOR_NAMES


def _resource_attributes(raw: str) -> dict[str, str] | None:
    """``OTEL_RESOURCE_ATTRIBUTES``: ``key1=value1,key2=value2``, values URL-encoded.
    A malformed member is an error: it would silently mislabel every span."""
    if not raw.strip():
        return None
    attributes: dict[str, str] = {}
    for member in raw.split(","):
        if not member.strip():
            continue
        key, eq, value = member.partition("=")
        if not eq or not key.strip():
            expected = f"expected key=value pairs separated by commas; {member!r} is not one"
            raise ConfigError("OTEL_RESOURCE_ATTRIBUTES", raw, expected, ENV)
        attributes[unquote(key.strip())] = unquote(value.strip())
    return attributes


def _number(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ConfigError(name, raw, "expected a number between 0 and 1", ENV)
    return value


def _parent(env: Mapping[str, str]) -> str | None:
    raw = env.get("INFRATRACE_SAMPLE_PARENT", "").strip()
    if not raw:
        return None
    if raw not in ("honor", "ignore"):
        raise ConfigError("INFRATRACE_SAMPLE_PARENT", raw, 'expected "honor" or "ignore"', ENV)
    return raw


def _sampler(env: Mapping[str, str]) -> dict[str, Any] | None:
    """``OTEL_TRACES_SAMPLER`` (+ ``_ARG``) as a ``[sample]`` table: ``traceidratio``
    is ``rate``; ``parentbased_*`` honour an incoming sampled flag, the others ignore
    it; ``always_off`` keeps nothing, not even failing traces."""
    raw = env.get("OTEL_TRACES_SAMPLER", "").strip()
    if not raw:
        return None
    sampler = raw.lower()
    if sampler not in SAMPLERS:
        raise ConfigError("OTEL_TRACES_SAMPLER", raw, "expected one of " + ", ".join(SAMPLERS), ENV)
    base = sampler.removeprefix("parentbased_")
    table: dict[str, Any] = {"parent": "honor" if sampler.startswith("parentbased_") else "ignore"}
    if base == "always_on":
        table["rate"] = 1.0
    elif base == "always_off":
        table["rate"] = 0.0
        table["error"] = False
    else:
        ratio = _number(env, "OTEL_TRACES_SAMPLER_ARG")
        table["rate"] = 1.0 if ratio is None else ratio
    return table
