"""Drivers by name: the built-ins, ``register_driver()`` and the ``infratrace.drivers``
entry-point group for third-party packages.

A driver factory is called with the validated :class:`ConnectionConfig` at
``configure()`` and returns an object with ``write(spans)`` and ``close()``. A factory
(usually the driver class) may declare the keys of its ``setting`` table as a
``settings_schema`` attribute, a dataclass built with :mod:`infratrace._settings`:
``load_config()`` then checks the table against it and the driver gets the typed
object as ``config.settings``; without one, the table is passed through as a dict."""

from __future__ import annotations

import dataclasses
import importlib
import threading
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._errors import ConfigError
from ._spandata import SpanData

if TYPE_CHECKING:
    # Only for annotations: _config imports this module to look up settings schemas.
    from ._config import ConnectionConfig

__all__ = [
    "Driver",
    "DriverFactory",
    "available_drivers",
    "driver_settings_schema",
    "get_driver_factory",
    "register_driver",
]

ENTRY_POINT_GROUP = "infratrace.drivers"


@runtime_checkable
class Driver(Protocol):
    """Turns a batch of ended spans into bytes at one destination.

    ``write`` runs on the connection's own background thread with the spans it kept,
    as immutable :class:`~infratrace.SpanData` records (the resource is on each); it
    may block on I/O and raise — the pipeline counts the failure, reports it and drops
    that batch."""

    def write(self, spans: Sequence[SpanData]) -> None: ...

    def close(self) -> None: ...


DriverFactory = Callable[["ConnectionConfig"], Driver]

_BUILTIN: dict[str, str] = {
    "default": "infratrace.drivers.default:ConsoleDriver",
    "console": "infratrace.drivers.default:ConsoleDriver",
    "file": "infratrace.drivers.file:FileDriver",
    "discard": "infratrace.drivers.discard:DiscardDriver",
    "otlp": "infratrace.drivers.otlp:OTLPDriver",
    "greptime": "infratrace.drivers.greptime:GreptimeDriver",
}
_registered: dict[str, DriverFactory] = {}
_lock = threading.Lock()


def register_driver(name: str, factory: DriverFactory) -> None:
    """Make ``driver = "<name>"`` available; replaces a driver of the same name."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"driver name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"driver factory for {name!r} must be callable, got {factory!r}")
    with _lock:
        _registered[name] = factory


def _entry_point_names() -> dict[str, object]:
    try:
        return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    except Exception:  # a broken third-party distribution must not break configure()
        return {}


def available_drivers() -> list[str]:
    return sorted(set(_BUILTIN) | set(_registered) | set(_entry_point_names()))


def get_driver_factory(name: str, key: str = "trace.driver") -> DriverFactory:
    with _lock:
        factory = _registered.get(name)
    if factory is not None:
        return factory
    if name in _BUILTIN:
        module_name, _, attr = _BUILTIN[name].partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            raise ConfigError(key, name, "this driver is not part of this infratrace version") from None
        factory = getattr(module, attr)
        return factory  # type: ignore[no-any-return]
    entry = _entry_point_names().get(name)
    if entry is not None:
        try:
            return entry.load()  # type: ignore[attr-defined,no-any-return]
        except Exception as exc:
            raise ConfigError(key, name, f"its entry point failed to load: {exc!r}") from None
    raise ConfigError(key, name, "unknown driver; available: " + ", ".join(available_drivers()))


def driver_settings_schema(name: str, key: str = "trace.driver") -> type[Any] | None:
    """The ``settings_schema`` of the driver called ``name``, or ``None`` when its
    factory declares none. Raises :class:`ConfigError` naming ``key`` for an unknown
    driver. Built-in driver modules import their optional dependencies only when a
    driver is built, so looking one up here needs none of them."""
    schema = getattr(get_driver_factory(name, key), "settings_schema", None)
    if schema is not None and not (isinstance(schema, type) and dataclasses.is_dataclass(schema)):
        raise TypeError(f"the settings_schema of driver {name!r} must be a dataclass, got {schema!r}")
    return schema
