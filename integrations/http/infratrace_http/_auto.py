"""``infratrace-run``'s HTTP client instrumentations (entry points ``httpx``,
``requests``, ``urllib3`` and ``urllib.request`` of the group
``infratrace.instrumentations``): each library's ``instrument()`` with its defaults
once the library is imported, unless the program instrumented it already."""

from __future__ import annotations

from types import ModuleType

__all__ = ["httpx", "requests", "urllib", "urllib3"]


def httpx(module: ModuleType) -> None:
    from . import httpx as instrumentation

    if not instrumentation.is_instrumented():
        instrumentation.instrument()


def requests(module: ModuleType) -> None:
    from . import requests as instrumentation

    if not instrumentation.is_instrumented():
        instrumentation.instrument()


def urllib3(module: ModuleType) -> None:
    from . import urllib3 as instrumentation

    if not instrumentation.is_instrumented():
        instrumentation.instrument()


def urllib(module: ModuleType) -> None:
    from . import urllib as instrumentation

    if not instrumentation.is_instrumented():
        instrumentation.instrument()
