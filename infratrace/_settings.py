"""Driver settings: each driver declares the keys of its ``[trace.<conn>.setting]`` table
as a frozen dataclass, and :func:`parse_settings` checks a table against it, so
``load_config()`` rejects a bad driver setting before any driver is built.

A schema is a plain ``dataclasses.dataclass`` whose fields are declared with the helpers
below (:func:`text`, :func:`flag`, :func:`whole`, :func:`number`, :func:`duration`,
:func:`size`, :func:`choice`, :func:`table`); each puts a :class:`Setting` in the field's
metadata: the value's kind, its aliases, the default as written in TOML, a one-line help
text for the docs, and whether the value is a secret::

    @dataclass(frozen=True)
    class FileSettings:
        output: str = text("trace.log", "file name", aliases=("file", "path"))
        maxsize: int = size(0, "rotate before the file would pass this size", note="off")

Why dataclasses and not msgspec or pydantic: no dependency, and a bad value must raise
the same :class:`~infratrace.ConfigError` as every other configuration key (``<source>:
trace.file.setting.maxsize = 'huge' is invalid: expected a size such as ...``), with key
aliases and the Go-style duration and size units, none of which those libraries give
without as much code again.

Checks that involve several keys go in an optional ``validate(self, given)`` method of
the schema: ``given`` maps each field that the table set to the key it was written
under (an alias, maybe), and the method returns the final instance (e.g. with the parts
of a URL filled in) or raises ``ConfigError`` whose key is relative to the table
(``"url"``); :func:`parse_settings` prefixes it with the table's path. A
``__post_init__`` may raise the same way. Validation must not touch the outside world
(files, network): ``infratrace check`` runs it too.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ._errors import ConfigError
from ._units import DURATION_HELP, SIZE_HELP, parse_duration, parse_size

if TYPE_CHECKING:
    from ._config import ConnectionConfig

__all__ = [
    "NoSettings",
    "Setting",
    "choice",
    "duration",
    "flag",
    "markdown_table",
    "masked",
    "number",
    "parse_settings",
    "schema_fields",
    "settings_for",
    "size",
    "table",
    "text",
    "whole",
]

S = TypeVar("S")
T = TypeVar("T")

STR, BOOL, INT, NUMBER, DURATION, SIZE, CHOICE, TABLE = "str", "bool", "int", "number", "duration", "size", "choice", "table"
MASK = "***"
_METADATA_KEY = "infratrace.setting"


@dataclasses.dataclass(frozen=True)
class Setting:
    """What a schema field accepts. ``default`` is the default as a user would write it
    in TOML (``"5s"``), shown in the docs; ``note`` follows it there in parentheses."""

    kind: str
    help: str = ""
    default: Any = None
    aliases: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False  # durations: zero is refused too
    choices: tuple[str, ...] = ()
    values: str | None = None  # tables: the kind every value must have
    secret: bool = False  # masked wherever settings are shown
    note: str = ""

    def expected(self) -> str:
        """What is allowed, as the end of a ``ConfigError`` message."""
        if self.kind == STR:
            return "expected a string"
        if self.kind == BOOL:
            return "expected true or false"
        if self.kind == INT:
            if self.minimum is not None and self.maximum is not None:
                return f"expected a whole number between {self.minimum} and {self.maximum}"
            return "expected a whole number" + (f" >= {self.minimum}" if self.minimum is not None else "")
        if self.kind == NUMBER:
            if self.minimum is not None and self.maximum is not None:
                return f"expected a number between {self.minimum} and {self.maximum}"
            return "expected a number" + (f" >= {self.minimum}" if self.minimum is not None else "")
        if self.kind == DURATION:
            return f"expected a positive duration: {DURATION_HELP}" if self.positive else f"expected {DURATION_HELP}"
        if self.kind == SIZE:
            return f"expected {SIZE_HELP}"
        if self.kind == CHOICE:
            return "expected one of " + ", ".join(repr(c) for c in self.choices)
        return "expected a table"

    def convert(self, key: str, value: Any) -> Any:
        """``value`` as the field's Python value; raises ``ConfigError`` naming ``key``
        (relative to the setting table) when it is not allowed."""
        kind = self.kind
        if kind == STR:
            if not isinstance(value, str):
                raise self._bad(key, value)
            return value
        if kind == BOOL:
            if not isinstance(value, bool):
                raise self._bad(key, value)
            return value
        if kind in (INT, NUMBER):
            # bool is an int in Python, never a number in TOML.
            allowed = (int,) if kind == INT else (int, float)
            if isinstance(value, bool) or not isinstance(value, allowed) or value != value:
                raise self._bad(key, value)
            if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
                raise self._bad(key, value)
            return value if kind == INT else float(value)
        if kind == DURATION:
            try:
                seconds = parse_duration(value)
            except ValueError:
                raise self._bad(key, value) from None
            if self.positive and seconds <= 0:
                raise self._bad(key, value)
            return seconds
        if kind == SIZE:
            try:
                return parse_size(value)
            except ValueError:
                raise self._bad(key, value) from None
        if kind == CHOICE:
            if not isinstance(value, str) or value not in self.choices:
                raise self._bad(key, value)
            return value
        if not isinstance(value, Mapping):
            raise self._bad(key, value)
        items: dict[str, Any] = {}
        for name, item in value.items():
            items[str(name)] = item if self.values is None else Setting(self.values).convert(f"{key}.{name}", item)
        return MappingProxyType(items)

    def _bad(self, key: str, value: Any) -> ConfigError:
        return ConfigError(key, value, self.expected())


def _field(spec: Setting, default: T) -> T:
    # A secret stays out of repr(), so logging a settings object never shows it.
    return dataclasses.field(default=default, repr=not spec.secret, metadata={_METADATA_KEY: spec})


def text(default: str, help: str, *, aliases: tuple[str, ...] = (), note: str = "", secret: bool = False) -> str:
    """A string."""
    return _field(Setting(STR, help, default, aliases, secret=secret, note=note), default)


def flag(default: bool, help: str, *, aliases: tuple[str, ...] = (), note: str = "") -> bool:
    """``true`` or ``false``."""
    return _field(Setting(BOOL, help, default, aliases, note=note), default)


def whole(
    default: int, help: str, *, minimum: int = 0, maximum: int | None = None, aliases: tuple[str, ...] = (), note: str = ""
) -> int:
    """A whole number between ``minimum`` and ``maximum``."""
    spec = Setting(INT, help, default, aliases, minimum=minimum, maximum=maximum, note=note)
    return _field(spec, default)


def number(
    default: float,
    help: str,
    *,
    minimum: float = 0.0,
    maximum: float | None = None,
    aliases: tuple[str, ...] = (),
    note: str = "",
) -> float:
    """A number (whole or not) between ``minimum`` and ``maximum``, as a float."""
    spec = Setting(NUMBER, help, default, aliases, minimum=minimum, maximum=maximum, note=note)
    return _field(spec, float(default))


def duration(default: str | float, help: str, *, positive: bool = False, aliases: tuple[str, ...] = (), note: str = "") -> float:
    """A duration (``"200ms"``, ``"1m30s"``, seconds), as seconds; ``positive`` refuses 0."""
    spec = Setting(DURATION, help, default, aliases, positive=positive, note=note)
    return _field(spec, parse_duration(default))


def size(default: str | int, help: str, *, aliases: tuple[str, ...] = (), note: str = "") -> int:
    """A size (``"100MB"``, bytes), as bytes."""
    return _field(Setting(SIZE, help, default, aliases, note=note), parse_size(default))


def choice(default: str, choices: tuple[str, ...], help: str, *, aliases: tuple[str, ...] = (), note: str = "") -> str:
    """One of ``choices``."""
    if default not in choices:
        raise ValueError(f"default {default!r} is not one of {choices!r}")
    return _field(Setting(CHOICE, help, default, aliases, choices=choices, note=note), default)


def table(
    help: str, *, values: str | None = None, aliases: tuple[str, ...] = (), note: str = "", secret: bool = False
) -> Mapping[str, Any]:
    """A TOML table, as a read-only mapping (empty by default); ``values`` is the kind
    each of its values must have (``"str"``), or ``None`` for any."""
    if values is not None and values not in (STR, BOOL, INT, NUMBER, DURATION, SIZE):
        raise ValueError(f"a table's values cannot be of kind {values!r}")
    spec = Setting(TABLE, help, {}, aliases, values=values, secret=secret, note=note)
    field: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: MappingProxyType({}), repr=not secret, metadata={_METADATA_KEY: spec}
    )
    return field


@dataclasses.dataclass(frozen=True)
class NoSettings:
    """The schema of a driver without settings: any key is an error."""


# -- reading a table ------------------------------------------------------------------

_FIELDS: dict[type[Any], tuple[tuple[str, Setting], ...]] = {}


def schema_fields(schema: type[Any]) -> tuple[tuple[str, Setting], ...]:
    """``(field name, Setting)`` for every key of ``schema``, in declaration order.
    Raises ``TypeError`` when ``schema`` is not a dataclass declared with the helpers
    of this module, or when two keys share a name."""
    cached = _FIELDS.get(schema)
    if cached is not None:
        return cached
    if not (isinstance(schema, type) and dataclasses.is_dataclass(schema)):
        raise TypeError(f"a settings schema must be a dataclass, got {schema!r}")
    fields: list[tuple[str, Setting]] = []
    seen: set[str] = set()
    for item in dataclasses.fields(schema):
        spec = item.metadata.get(_METADATA_KEY)
        if not isinstance(spec, Setting):
            raise TypeError(f"{schema.__name__}.{item.name} is not declared with infratrace._settings (text(), flag(), ...)")
        for name in (item.name, *spec.aliases):
            if name in seen:
                raise TypeError(f"{schema.__name__}: the key {name!r} is declared twice")
            seen.add(name)
        fields.append((item.name, spec))
    _FIELDS[schema] = result = tuple(fields)
    return result


@overload
def parse_settings(schema: type[S], table: Mapping[str, Any], prefix: str, source: str | None = None) -> S: ...


@overload
def parse_settings(
    schema: type[S], table: Mapping[str, Any], prefix: str, source: str | None = None, *, errors: list[ConfigError] | None
) -> S | None: ...


def parse_settings(
    schema: type[S], table: Mapping[str, Any], prefix: str, source: str | None = None, *, errors: list[ConfigError] | None = None
) -> S | None:
    """Check a ``setting`` table against ``schema`` and return the schema's instance.

    Every key must be a field or one of its aliases (set once), every value of the
    field's kind; then the schema's own ``validate(given)`` runs. A bad key raises
    :class:`ConfigError` naming ``<prefix>.<key>`` as written, the value, and what is
    allowed. With an ``errors`` list (``infratrace check``) nothing is raised: every
    bad key is appended to it, and ``None`` returned when there was one; ``validate``
    runs only when every key was good (its checks span keys)."""
    found: list[ConfigError] | None = None if errors is None else []
    instance: S | None = None
    try:
        instance = _parse(schema, table, found)
    except ConfigError as exc:
        if found is None:
            raise ConfigError(f"{prefix}.{exc.key}", exc.value, exc.expected, source) from None
        found.append(exc)
    if errors is not None and found:
        errors.extend(ConfigError(f"{prefix}.{exc.key}", exc.value, exc.expected, source) for exc in found)
        return None
    return instance


def _parse(schema: type[S], table: Mapping[str, Any], found: list[ConfigError] | None = None) -> S:
    """The instance; each bad key raises, or — with ``found`` — is appended to it and
    the next key checked (then ``validate`` is skipped)."""
    fields = schema_fields(schema)
    by_key = {name: (field_name, spec) for field_name, spec in fields for name in (field_name, *spec.aliases)}
    values: dict[str, Any] = {}
    given: dict[str, str] = {}
    for key, value in table.items():
        try:
            entry = by_key.get(key)
            if entry is None:
                valid = ", ".join(sorted(by_key)) or "none (this driver has no settings)"
                raise ConfigError(key, value, f"unknown key; valid keys: {valid}")
            field_name, spec = entry
            if field_name in given:
                raise ConfigError(key, value, f"{given[field_name]!r} and {key!r} are the same setting; set only one")
            values[field_name] = spec.convert(key, value)
            given[field_name] = key
        except ConfigError as exc:
            if found is None:
                raise
            found.append(exc)
    instance = schema(**values)
    if found:
        return instance
    validate: Callable[[Mapping[str, str]], Any] | None = getattr(instance, "validate", None)
    if validate is not None:
        instance = validate(MappingProxyType(given))
        if not isinstance(instance, schema):
            raise TypeError(f"{schema.__name__}.validate() must return a {schema.__name__}, got {instance!r}")
    return instance


def settings_for(config: ConnectionConfig, schema: type[S]) -> S:
    """The connection's settings as a ``schema`` instance: the one ``load_config()``
    made, or — for a configuration built another way, such as a ``ConnectionConfig``
    made by hand or a factory registered without the schema — read from its raw
    ``setting`` table now, with the same checks and messages."""
    settings = config.settings
    if isinstance(settings, schema):
        return settings
    return parse_settings(schema, config.setting, f"{config.path}.setting", config.source)


# -- showing settings --------------------------------------------------------------------


def masked(settings: Any) -> dict[str, Any]:
    """A settings instance as a dict, with every non-empty secret replaced by ``***``."""
    out: dict[str, Any] = {}
    for name, spec in schema_fields(type(settings)):
        value = getattr(settings, name)
        out[name] = MASK if spec.secret and value else (dict(value) if isinstance(value, Mapping) else value)
    return out


def toml_literal(value: Any) -> str:
    """A default as it is written in TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_literal(v)}" for k, v in value.items()) + " }" if value else "{}"
    return repr(value)


def key_cell(name: str, spec: Setting) -> str:
    aliases = ", ".join(f"`{alias}`" for alias in spec.aliases)
    label = "alias" if len(spec.aliases) == 1 else "aliases"
    return f"`{name}`" + (f" ({label} {aliases})" if aliases else "")


def default_cell(spec: Setting) -> str:
    return f"`{toml_literal(spec.default)}`" + (f" ({spec.note})" if spec.note else "")


def markdown_table(schema: type[Any]) -> str:
    """The docs' table of a schema's keys: key and aliases, default, help."""
    lines = ["| `setting` key | default | meaning |", "| --- | --- | --- |"]
    for name, spec in schema_fields(schema):
        lines.append(f"| {key_cell(name, spec)} | {default_cell(spec)} | {spec.help} |")
    return "\n".join(lines) + "\n"
