"""The exceptions infratrace raises, all below :class:`InfratraceError`.

Only configuration is allowed to raise into the application (at ``configure()``,
before any span is written); everything on the span path is swallowed and counted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["ConfigError", "InfratraceError", "MissingExtraError"]


class InfratraceError(Exception):
    """Base class of every exception raised by infratrace."""


class ConfigError(InfratraceError, ValueError):
    """A configuration value is invalid.

    The message names the source (file or ``<string>``/``<mapping>``), the dotted key
    path (``trace.greptime.sample.rules[1].sample``), the bad value in TOML syntax and
    what is allowed.
    """

    def __init__(self, key: str, value: Any, expected: str, source: str | None = None) -> None:
        self.key = key
        self.value = value
        self.expected = expected
        self.source = source
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.key} = {toml_text(self.value)} is invalid: {self.expected}"

    def with_source(self, source: str) -> ConfigError:
        """Return the same error, naming the file or origin it came from."""
        if self.source is None:
            self.source = source
            self.args = (self._message(),)
        return self


def toml_text(value: Any, depth: int = 0) -> str:
    """``value`` as it would be written in TOML (``true``, ``"text"``, ``[1, 2]``,
    ``{ a = 1 }``), so an error shows what the user wrote; anything TOML has no syntax
    for (``None``, objects) as its Python ``repr``."""
    if depth > 4:
        return "…"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_text(item, depth + 1) for item in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_toml_key(key)} = {toml_text(item, depth + 1)}" for key, item in value.items())
        return "{ " + inner + " }" if inner else "{}"
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__}>"


def _toml_key(key: Any) -> str:
    text = str(key)
    return text if text and all(c.isalnum() or c in "-_" for c in text) and text.isascii() else json.dumps(text)


class MissingExtraError(ConfigError):
    """A configured driver needs an optional dependency that is not installed."""

    def __init__(self, key: str, driver: str, extra: str, missing: str) -> None:
        super().__init__(
            key,
            driver,
            f"the {driver!r} driver needs the package {missing!r}: pip install 'infratrace[{extra}]'",
        )
