"""The exceptions infratrace raises, all below :class:`InfratraceError`.

Only configuration is allowed to raise into the application (at ``configure()``,
before any span is written); everything on the span path is swallowed and counted.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConfigError", "InfratraceError", "MissingExtraError"]


class InfratraceError(Exception):
    """Base class of every exception raised by infratrace."""


class ConfigError(InfratraceError, ValueError):
    """A configuration value is invalid.

    The message names the source (file or ``<string>``/``<mapping>``), the dotted key
    path (``trace.greptime.sample.rules[1].sample``), the bad value and what is allowed.
    """

    def __init__(self, key: str, value: Any, expected: str, source: str | None = None) -> None:
        self.key = key
        self.value = value
        self.expected = expected
        self.source = source
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.key} = {self.value!r} is invalid: {self.expected}"

    def with_source(self, source: str) -> ConfigError:
        """Return the same error, naming the file or origin it came from."""
        if self.source is None:
            self.source = source
            self.args = (self._message(),)
        return self


class MissingExtraError(ConfigError):
    """A configured driver needs an optional dependency that is not installed."""

    def __init__(self, key: str, driver: str, extra: str, missing: str) -> None:
        super().__init__(
            key,
            driver,
            f"the {driver!r} driver needs the package {missing!r}: pip install 'infratrace[{extra}]'",
        )
