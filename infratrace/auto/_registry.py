"""The instrumentations ``infratrace-run`` knows: the entry points of the
``infratrace.instrumentations`` group, which each adapter distribution declares in its
own ``pyproject.toml``, plus log correlation, which is part of the core.

An entry point's **name** is the module whose import triggers it (``flask``,
``starlette.applications``, ``urllib.request``); its **value** is the
``module:object`` called with that module once it has been executed. The
instrumentation is named after the module's top-level package (``flask``,
``starlette``, ``urllib``): the name ``$INFRATRACE_DISABLED_INSTRUMENTATIONS`` takes.
Nothing of the adapter is imported until its module is: the core never names an
adapter, and an adapter that is not installed has no entry point."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping

from . import GROUP
from .bootstrap.sitecustomize import DISABLED_ENV, Entry, disabled_names

__all__ = [
    "GROUP",
    "LOG_CORRELATION_ENV",
    "LOG_ENTRY",
    "encode",
    "instrumentation_names",
    "load_registry",
    "log_correlation",
    "report_unknown",
]

LOG_CORRELATION_ENV = "INFRATRACE_LOG_CORRELATION"
# Log correlation is the core's own (infratrace.logging): on with $INFRATRACE_LOG_CORRELATION.
LOG_ENTRY: Entry = ("logging", "logging", "infratrace.auto._builtin:log_correlation")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_TARGET = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")


def load_registry(environ: Mapping[str, str] | None = None) -> list[Entry]:
    """Every instrumentation installed, in a stable order (by name, then trigger).
    An entry point that is not ``module = "package.module:object"`` is reported on
    stderr and left out."""
    from importlib.metadata import entry_points

    env = os.environ if environ is None else environ
    found: dict[tuple[str, str], Entry] = {}
    for point in entry_points(group=GROUP):
        trigger, target = point.name.strip(), point.value.strip()
        if not _MODULE.match(trigger) or not _TARGET.match(target):
            print(
                f"infratrace: entry point {trigger!r} = {target!r} of {GROUP} ignored: "
                'expected "<module> = <package.module>:<object>"',
                file=sys.stderr,
            )
            continue
        found.setdefault((trigger, target), (trigger.partition(".")[0].lower(), trigger, target))
    entries = sorted(found.values())
    if log_correlation(env):
        entries.insert(0, LOG_ENTRY)
    return entries


def log_correlation(environ: Mapping[str, str]) -> bool:
    """``$INFRATRACE_LOG_CORRELATION``: off by default (a record factory adding
    ``trace_id`` would make ``logger.info(..., extra={"trace_id": ...})`` raise)."""
    return environ.get(LOG_CORRELATION_ENV, "").strip().lower() in _TRUE


def instrumentation_names(entries: list[Entry]) -> list[str]:
    """The names ``$INFRATRACE_DISABLED_INSTRUMENTATIONS`` accepts (``logging``
    always: log correlation can be switched on for a child)."""
    return sorted({entry[0] for entry in entries} | {LOG_ENTRY[0]})


def encode(entries: list[Entry]) -> str:
    """The table as ``$INFRATRACE_AUTO_REGISTRY`` carries it to every process."""
    return ";".join(" ".join(entry) for entry in entries)


def report_unknown(entries: list[Entry], environ: Mapping[str, str]) -> list[str]:
    """One line on stderr naming the unknown names of
    ``$INFRATRACE_DISABLED_INSTRUMENTATIONS`` and the valid ones, and one for a
    ``$INFRATRACE_LOG_CORRELATION`` that is neither true nor false; the program runs
    on (an unknown name disables nothing). Returns the lines said."""
    said: list[str] = []
    valid = instrumentation_names(entries)
    unknown = sorted(disabled_names(environ) - set(valid))
    if unknown:
        names = ", ".join(f'"{name}"' for name in unknown)
        said.append(
            f"infratrace: {DISABLED_ENV} = {environ.get(DISABLED_ENV, '')!r}: unknown instrumentation {names} "
            f"(ignored); valid: {', '.join(valid)}"
        )
    flag = environ.get(LOG_CORRELATION_ENV, "").strip().lower()
    if flag not in _TRUE and flag not in _FALSE:
        said.append(
            f"infratrace: {LOG_CORRELATION_ENV} = {environ.get(LOG_CORRELATION_ENV, '')!r} is invalid "
            "(log correlation stays off): expected true or false"
        )
    for line in said:
        print(line, file=sys.stderr)
    return said
