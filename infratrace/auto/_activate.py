"""What the bootstrap calls once a watched module has been executed: the
instrumentation's object is imported and called with the module. It never raises: a
failure is one line on stderr and the program runs on without that instrumentation."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

__all__ = ["activate", "load_target"]


def load_target(target: str) -> Any:
    """``package.module:object.attr`` → the object."""
    module_name, _, path = target.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in path.split("."):
        found = getattr(found, part)
    return found


def activate(name: str, target: str, module: ModuleType) -> bool:
    """Instrument ``module`` with ``target``; ``False`` (and one line on stderr) when
    that failed."""
    try:
        instrument = load_target(target)
        instrument(module)
        return True
    except Exception as exc:
        try:
            print(f"infratrace: {name} not instrumented ({target}): {type(exc).__name__}: {exc}", file=sys.stderr)
        except Exception:
            pass
        return False
