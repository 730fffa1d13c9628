"""Per-connection sampling: rules, attrs, always-keep-errors and a
deterministic hash so every span of a trace gets the same decision on a connection."""

from __future__ import annotations

from ._config import SampleConfig, SampleRule
from ._spandata import SpanData

__all__ = ["Sampler", "hash01"]

_MASK64 = (1 << 64) - 1
_TWO64 = float(1 << 64)


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit hash of a 64-bit integer."""
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK64
    return x ^ (x >> 31)


def hash01(value: int) -> float:
    """Map an id (trace ids are 128-bit) to [0, 1) deterministically. Ids that are not
    random (sequential ids from another system) are spread evenly too."""
    return _mix64((value ^ (value >> 64)) & _MASK64) / _TWO64


def _rule_matches(rule: SampleRule, span: SpanData) -> bool:
    name = rule.name
    if name:
        if name.endswith("*"):
            if not span.name.startswith(name[:-1]):
                return False
        elif span.name != name:
            return False
    if rule.attrs:
        attributes = span.attributes
        for key, expected in rule.attrs:
            if key not in attributes:
                return False
            value = attributes[key]
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            if text != expected:
                return False
    return True


class Sampler:
    """``keep(span, factor)``: keep when ``hash01(key) <= ratio × factor``; the first
    matching rule's ratio replaces ``rate``; errors are kept when ``error = true``."""

    __slots__ = ("keep_errors", "keeps_everything", "key", "rate", "rules")

    def __init__(self, config: SampleConfig) -> None:
        self.rate = config.rate
        self.keep_errors = config.error
        self.key = config.key
        self.rules = config.rules
        self.keeps_everything = not config.rules and config.rate >= 1.0

    def ratio_for(self, span: SpanData) -> float:
        for rule in self.rules:
            if _rule_matches(rule, span):
                return rule.ratio
        return self.rate

    def keep(self, span: SpanData, factor: float = 1.0) -> bool:
        if self.keep_errors and span.status == "error":
            return True
        ratio = (self.ratio_for(span) if self.rules else self.rate) * factor
        if ratio >= 1.0:
            return True
        if ratio <= 0.0:
            return False
        key = self.key
        if key == "trace_id":
            value = int(span.trace_id, 16)
        elif key == "span_id":
            value = int(span.span_id, 16)
        else:
            value = int(span.trace_id, 16) ^ (int(span.span_id, 16) * 0x9E3779B97F4A7C15)
        return hash01(value) <= ratio
