"""Property-based fuzzing: the traceparent/tracestate parser, the configuration
validator and attribute conversion never raise an unexpected exception type, never
hang, and always give what every output can hold."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infratrace import ConfigError, load_config
from infratrace._json import encode_json
from infratrace._spandata import safe_attributes
from infratrace.instrumentation import format_traceparent, parse_traceparent

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HEX = "0123456789abcdefABCDEF"
# Text that looks like a traceparent often: the right shape with random pieces.
traceparent_like = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda v, t, s, f, extra: f"{v}-{t}-{s}-{f}{extra}",
        st.text(alphabet=HEX, min_size=0, max_size=3),
        st.text(alphabet=HEX + "-x ", min_size=0, max_size=34),
        st.text(alphabet=HEX + "-", min_size=0, max_size=18),
        st.text(alphabet=HEX, min_size=0, max_size=3),
        st.text(max_size=6),
    ),
)


@FUZZ
@given(traceparent_like, st.text(max_size=300))
def test_traceparent_parsing_never_raises(header: str, tracestate: str) -> None:
    context = parse_traceparent(header, tracestate)
    if context is not None:
        again = parse_traceparent(format_traceparent(context), context.tracestate)
        assert again is not None and (again.trace_id, again.span_id, again.flags) == (
            context.trace_id,
            context.span_id,
            context.flags,
        )
        assert "\n" not in context.tracestate and "\r" not in context.tracestate


@FUZZ
@given(st.integers(1, 2**128 - 1), st.integers(1, 2**64 - 1), st.integers(0, 255))
def test_every_valid_traceparent_round_trips(trace_id: int, span_id: int, flags: int) -> None:
    header = f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"
    context = parse_traceparent(header)
    assert context is not None and format_traceparent(context) == header


toml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["200ms", "5s", "inf", "nan", "-1", "100000000d", "file", "otlp", "sync", "json", "honor"]),
)
keys = st.one_of(
    st.sampled_from(
        ["trace", "infratrace", "limits", "driver", "json", "sample", "buffer", "timeout", "overflow", "format",
         "flag", "fields", "setting", "rate", "error", "slow", "key", "parent", "salt", "rules", "name", "attrs",
         "output", "maxsize", "endpoint", "headers", "attributes", "value_length", "service", "pending_spans"]
    ),
    st.text(max_size=8),
)  # fmt: skip
documents = st.recursive(
    toml_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)),
    max_leaves=25,
)


@FUZZ
@given(st.dictionaries(keys, documents, max_size=4))
def test_the_validator_accepts_or_names_the_problem(document: dict[str, Any]) -> None:
    try:
        config = load_config(document)
    except ConfigError as exc:
        assert str(exc)  # a message naming the key, never a traceback from inside
    else:
        assert config.connections


@FUZZ
@given(st.text(max_size=300))
def test_any_text_as_toml_is_config_or_config_error(text: str) -> None:
    try:
        load_config(text)
    except ConfigError:
        pass


class Weird:
    def __init__(self, mode: int) -> None:
        self.mode = mode

    def __str__(self) -> str:
        if self.mode == 0:
            raise RuntimeError("no")
        if self.mode == 1:
            return "w" * 20_000
        return "weird"

    __repr__ = __str__


attribute_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**200), 2**200),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=50),
        st.binary(max_size=20),
        st.builds(Weird, st.integers(0, 2)),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.tuples(children, children),
        st.frozensets(st.integers(), max_size=4),
        st.dictionaries(st.text(max_size=5), children, max_size=4),
    ),
    max_leaves=20,
)


def _plain(value: Any) -> bool:
    if isinstance(value, (bool, str)):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    if isinstance(value, float):
        return math.isfinite(value)
    return False


@FUZZ
@given(st.dictionaries(st.one_of(st.text(max_size=10), st.integers(), st.builds(Weird, st.integers(0, 2))),
                       attribute_values, max_size=10))  # fmt: skip
def test_attribute_conversion_gives_what_every_output_can_hold(attributes: dict[Any, Any]) -> None:
    safe = safe_attributes(attributes)
    for key, value in safe.items():
        assert isinstance(key, str) and len(key) <= 8192
        if isinstance(value, list):
            assert len(value) <= 1000 and all(_plain(item) for item in value)
        else:
            assert _plain(value)
        if isinstance(value, str):
            assert len(value) <= 8192
    json.loads(encode_json(safe))  # encodes, and is valid JSON
