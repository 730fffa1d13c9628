"""W3C Baggage: name/value pairs that travel with a request across services.

Baggage belongs to the running context (a thread, an asyncio task, a request's context
copy), not to a span: the web and Celery adapters set it from the incoming ``baggage``
header for the request's context, :func:`infratrace.inject` (and so the HTTP client
instrumentations and the Celery producer) writes it on the way out, and code in between
reads and changes it::

    from infratrace import baggage

    baggage.get("tenant")                       # "acme", or None
    with baggage.scope({"tenant": "acme"}):      # set for a block; restored after
        ...
    baggage.set("user.id", "42")                 # for the rest of this context

Baggage is never written into spans by itself (it may carry what a trace file should
not); copy what you want with ``span.set_attribute``.

Limits (https://www.w3.org/TR/baggage/#limits, and OpenTelemetry's): at most
:data:`MAX_MEMBERS` entries, a header of at most :data:`MAX_HEADER_BYTES` bytes, each
entry at most :data:`MAX_MEMBER_BYTES`; what exceeds them is left out (on the way in
and on the way out), never an error. Names are HTTP tokens; values are percent-encoded
on the wire. Member properties (``;prop=x``) are not kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import Any
from urllib.parse import quote, unquote

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_MEMBERS",
    "MAX_MEMBER_BYTES",
    "attach",
    "clear",
    "detach",
    "format_baggage",
    "get",
    "get_all",
    "parse_baggage",
    "remove",
    "scope",
    "set",
]

MAX_MEMBERS = 180
MAX_HEADER_BYTES = 8192
MAX_MEMBER_BYTES = 4096

_EMPTY: Mapping[str, str] = MappingProxyType({})
# The context's baggage: an immutable mapping (replaced, never changed in place, so a
# context copy never sees another's change).
_baggage: ContextVar[Mapping[str, str]] = ContextVar("infratrace_baggage", default=_EMPTY)
BaggageToken = Token[Mapping[str, str]]

# RFC 7230 token: the characters a baggage name may have.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# What a value may hold on the wire unescaped (baggage-octet, minus %, which escapes).
_VALUE_SAFE = "!#$&'()*+-./:<=>?@[]^_`{|}~"


def get(name: str, default: str | None = None) -> str | None:
    """The value of ``name`` in the current context's baggage, or ``default``."""
    return _baggage.get().get(name, default)


def get_all() -> dict[str, str]:
    """A copy of the current context's baggage."""
    return dict(_baggage.get())


def set(name: str, value: str) -> None:
    """Set ``name`` to ``value`` for the rest of the current context (a request's
    context ends with the request; elsewhere prefer :func:`scope`). ``name`` must be an
    HTTP token and ``value`` a string: a ``ValueError`` says so otherwise."""
    _check(name, value)
    entries = dict(_baggage.get())
    entries[name] = value
    _baggage.set(MappingProxyType(entries))


def remove(name: str) -> None:
    """Remove ``name`` from the current context's baggage (nothing when absent)."""
    current = _baggage.get()
    if name in current:
        entries = dict(current)
        del entries[name]
        _baggage.set(MappingProxyType(entries))


def clear() -> None:
    """Remove every entry from the current context's baggage."""
    _baggage.set(_EMPTY)


def attach(entries: Mapping[str, str] | None) -> BaggageToken:
    """Make ``entries`` (checked like :func:`set`) the whole baggage of the current
    context; undo with :func:`detach`. For instrumentations: what an incoming message
    carried."""
    if not entries:
        return _baggage.set(_EMPTY)
    for name, value in entries.items():
        _check(name, value)
    return _baggage.set(MappingProxyType(dict(entries)))


def detach(token: BaggageToken) -> None:
    """Undo :func:`attach`; harmless when called from another context."""
    try:
        _baggage.reset(token)
    except (ValueError, RuntimeError):  # another context's token; a token used twice
        pass


@contextmanager
def scope(entries: Mapping[str, str]) -> Iterator[Mapping[str, str]]:
    """Add ``entries`` to the baggage for the ``with`` block; the previous baggage is
    back after it."""
    for name, value in entries.items():
        _check(name, value)
    merged = MappingProxyType({**_baggage.get(), **entries})
    token = _baggage.set(merged)
    try:
        yield merged
    finally:
        detach(token)


def _check(name: Any, value: Any) -> None:
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise ValueError(f"baggage name {name!r} is not valid: expected an HTTP token (letters, digits and !#$%&'*+-.^_`|~)")
    if not isinstance(value, str):
        raise ValueError(f"baggage value of {name!r} is {type(value).__name__}: expected a string")


# -- the wire format -----------------------------------------------------------------
def parse_baggage(header: str) -> dict[str, str]:
    """The entries of a ``baggage`` header (several headers joined with ``,``). Invalid
    members are skipped, properties dropped, values percent-decoded; a header over
    :data:`MAX_HEADER_BYTES` keeps the members that fit before it, at most
    :data:`MAX_MEMBERS`. Never raises."""
    entries: dict[str, str] = {}
    try:
        if len(header) > MAX_HEADER_BYTES:
            header = header[:MAX_HEADER_BYTES].rpartition(",")[0]
        for member in header.split(","):
            if len(entries) >= MAX_MEMBERS:
                break
            pair = member.partition(";")[0]
            name, eq, value = pair.partition("=")
            name, value = name.strip(), value.strip()
            if not eq or not _TOKEN.fullmatch(name) or len(member) > MAX_MEMBER_BYTES:
                continue
            entries[name] = unquote(value, errors="replace")
    except Exception:  # a str subclass with a hostile method: keep what was read
        pass
    return entries


def format_baggage(entries: Mapping[str, str]) -> str:
    """A ``baggage`` header value for ``entries`` (``""`` when empty): values
    percent-encoded; entries that would break the limits are left out."""
    members: list[str] = []
    size = 0
    for name, value in entries.items():
        if len(members) >= MAX_MEMBERS:
            break
        member = f"{name}={quote(value, safe=_VALUE_SAFE)}"
        if len(member) > MAX_MEMBER_BYTES or size + len(member) + bool(members) > MAX_HEADER_BYTES:
            continue
        size += len(member) + bool(members)
        members.append(member)
    return ",".join(members)


def current_header() -> str:
    """The current context's baggage as a header value (``""`` when there is none)."""
    entries = _baggage.get()
    return format_baggage(entries) if entries else ""
