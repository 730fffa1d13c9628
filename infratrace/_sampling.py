"""Per-connection sampling, decided once per trace.

A trace enters the process at its *local root*: a span begun with no parent, or with a
parent from elsewhere (a ``traceparent``, a Celery message). There each connection
decides, once (:meth:`Sampler.decide`), and every descendant span in the process
follows that decision — so a connection writes whole local traces or nothing of them.
The decision is carried by a :class:`LocalTrace` shared by the trace's spans.

A connection that did not keep a trace at its root may still keep it at its end (a
*tail* decision): ``error = true`` keeps it when any of its spans ends in error,
``slow = "500ms"`` when its local root lasted that long. Until the root ends its spans
are held (bounded: ``pending_spans`` per trace, ``pending_traces`` per process).

``key = "span_id"`` or ``"trace_span"`` opts out of whole traces: each span is then
decided alone when it ends (:meth:`Sampler.keep_span`).
"""

from __future__ import annotations

import hashlib
import os
import re
from fnmatch import translate
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._config import SampleConfig, SampleRule
    from ._spandata import SpanData

__all__ = ["LocalTrace", "Sampler", "hash01", "name_matcher"]

_MASK64 = (1 << 64) - 1
_TWO64 = float(1 << 64)


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit hash of a 64-bit integer."""
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK64
    return x ^ (x >> 31)


def hash01(value: int, salt: int = 0) -> float:
    """Map an id (trace ids are 128-bit) to [0, 1) deterministically for one ``salt``.
    Ids that are not random (sequential ids from another system) are spread evenly too;
    without the salt, nobody can tell which ids a connection keeps."""
    return _mix64((value ^ (value >> 64) ^ salt) & _MASK64) / _TWO64


def salt_value(text: str) -> int:
    """The 64-bit salt for ``salt = "..."``; a random one per process when empty."""
    if not text:
        return int.from_bytes(os.urandom(8), "big")
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


@lru_cache(maxsize=1024)
def name_matcher(pattern: str) -> re.Pattern[str] | None:
    """``fnmatch`` semantics (``*``, ``?``, ``[...]``), case-sensitive; ``None`` for the
    empty pattern, which matches every name."""
    return re.compile(translate(pattern)) if pattern else None


def _rule_matches(rule: SampleRule, name: str, attributes: dict[str, Any]) -> bool:
    matcher = name_matcher(rule.name)
    if matcher is not None and matcher.match(name) is None:
        return False
    for key, expected in rule.attrs:
        if key not in attributes:
            return False
        value = attributes[key]
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        if text != expected:
            return False
    return True


class LocalTrace:
    """The part of a trace in this process, shared by its spans: each connection's
    decision, whether a span of it ended in error, and the spans held for a tail
    decision until the local root ends.

    ``keep``/``tail`` are bit masks over the pipeline's connections (bit ``i``:
    connection ``i``). ``flags`` is the W3C trace-flags byte the trace propagates:
    sampled when a connection keeps it."""

    __slots__ = ("error", "flags", "keep", "owner", "pending", "root", "tail", "tracestate")

    def __init__(self, owner: object, keep: int, tail: int, flags: int, tracestate: str, root: int) -> None:
        self.owner = owner  # the pipeline that decided (decisions index its connections)
        self.keep = keep
        self.tail = tail
        self.flags = flags
        self.tracestate = tracestate
        self.root = root  # the local root's span id
        self.error = False
        self.pending: list[SpanData] | None = None

    @classmethod
    def kept(cls, owner: object, keep: int, flags: int | None, tracestate: str, root: int) -> LocalTrace:
        """A trace the ``keep`` connections keep (no tail decision): sampled, with a
        remote parent's other flags kept."""
        return cls(owner, keep, 0, 1 if flags is None else flags | 1, tracestate, root)

    def __repr__(self) -> str:
        return f"LocalTrace(keep={self.keep:b}, tail={self.tail:b}, flags={self.flags:02x}, error={self.error})"


class Sampler:
    """One connection's sampling configuration, compiled."""

    __slots__ = (
        "honor_parent",
        "keep_errors",
        "key",
        "pending_spans",
        "pending_traces",
        "per_span",
        "rate",
        "rules",
        "salt",
        "slow_ns",
        "tails",
    )

    def __init__(self, config: SampleConfig) -> None:
        self.rate = config.rate
        self.keep_errors = config.error
        self.key = config.key
        self.rules = config.rules
        self.honor_parent = config.parent == "honor"
        self.salt = salt_value(config.salt)
        self.slow_ns = int(config.slow * 1e9) if config.slow else 0
        self.per_span = config.key != "trace_id"
        # a tail decision is possible: spans of a trace not kept at its root are held
        self.tails = not self.per_span and (self.keep_errors or self.slow_ns > 0)
        self.pending_spans = config.pending_spans
        self.pending_traces = config.pending_traces

    def ratio_for(self, name: str, attributes: dict[str, Any]) -> float:
        for rule in self.rules:
            if _rule_matches(rule, name, attributes):
                return rule.ratio
        return self.rate

    def decide(self, trace_id: int, name: str, attributes: dict[str, Any], remote_flags: int | None, factor: float) -> bool:
        """Keep a trace whose local root is ``name`` (with the attributes it began with)?
        ``remote_flags``: the trace flags of a parent from elsewhere (``None`` for a
        new trace). The dynamic ``factor`` scales the ratio, never a parent's flag."""
        if remote_flags is not None and self.honor_parent:
            return bool(remote_flags & 1)
        ratio = self.ratio_for(name, attributes) * factor
        # ≥ 1 keeps and ≤ 0 drops without hashing; between, the salted hash decides.
        return ratio >= 1.0 or (ratio > 0.0 and hash01(trace_id, self.salt) < ratio)

    def keep_span(self, span: SpanData) -> bool:
        """``key = "span_id"`` / ``"trace_span"``: each span decided alone."""
        if self.keep_errors and span.status == "error":
            return True
        ratio = self.ratio_for(span.name, span.attributes)
        return ratio >= 1.0 or (ratio > 0.0 and hash01(self._span_key(span), self.salt) < ratio)

    def _span_key(self, span: SpanData) -> int:
        span_id = int(span.span_id, 16)
        return span_id if self.key == "span_id" else int(span.trace_id, 16) ^ (span_id * 0x9E3779B97F4A7C15)

    def tail_keeps(self, trace: LocalTrace, root: SpanData) -> bool:
        """At the local root's end: keep a trace held for a tail decision?"""
        if self.keep_errors and trace.error:
            return True
        return bool(self.slow_ns) and root.end_time_unix_nano - root.start_time_unix_nano >= self.slow_ns
