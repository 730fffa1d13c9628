"""W3C traceparent/tracestate in and out."""

from __future__ import annotations

import pytest

import infratrace
from infratrace import SpanContext, extract, inject

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_extract_valid_and_continue_the_trace(span_file):
    out = span_file()
    ctx = extract({"traceparent": VALID, "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"})
    assert isinstance(ctx, SpanContext)
    assert ctx.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736" and ctx.span_id == "00f067aa0ba902b7"
    assert ctx.sampled and ctx.tracestate == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    with infratrace.begin("http:GET /", parent=ctx) as span:
        headers = inject({})
    assert headers["traceparent"] == f"00-4bf92f3577b34da6a3ce929d0e0e4736-{span.span_id}-01"
    assert headers["tracestate"] == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    (record,) = out.spans()
    assert record["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert record["parent_span_id"] == "00f067aa0ba902b7"


def test_header_names_are_case_insensitive_and_bytes_are_accepted():
    assert extract({"Traceparent": VALID}) is not None
    assert extract({"TRACEPARENT": VALID.encode()}) is not None


def test_unsampled_flag_is_carried_through():
    ctx = extract({"traceparent": VALID[:-2] + "00"})
    assert ctx is not None and not ctx.sampled
    with infratrace.begin("x", parent=ctx) as span:
        assert inject({})["traceparent"].endswith("-00")
        assert span.flags == 0


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "garbage",
        VALID[:-1],  # too short
        VALID + "0",  # version 00 with trailing data
        VALID.upper(),  # hex must be lowercase
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",  # non-hex
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
    ],
)
def test_invalid_traceparent_is_ignored_and_a_new_trace_starts(span_file, bad):
    out = span_file()
    assert extract({"traceparent": bad}) is None
    with infratrace.begin("x", parent=extract({"traceparent": bad})):
        pass
    (record,) = out.spans()
    assert record["parent_span_id"] == "" and record["trace_id"] != "4bf92f3577b34da6a3ce929d0e0e4736"


def test_future_version_with_extra_fields_is_accepted():
    ctx = extract({"traceparent": "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"})
    assert ctx is not None and ctx.span_id == "00f067aa0ba902b7"


def test_invalid_tracestate_is_dropped_but_traceparent_kept():
    ctx = extract({"traceparent": VALID, "tracestate": "not a valid=entry===,"})
    assert ctx is not None and ctx.tracestate == ""
    many = ",".join(f"k{i}=v" for i in range(33))
    assert extract({"traceparent": VALID, "tracestate": many}).tracestate == ""  # type: ignore[union-attr]


def test_inject_without_span_writes_nothing_and_overwrites_stale_values():
    assert inject({}) == {}
    with infratrace.begin("x") as span:
        carrier = inject({"traceparent": VALID})
    assert span.span_id in carrier["traceparent"]


def test_extract_never_raises_on_odd_carriers():
    assert extract({"traceparent": 12}) is None
    assert extract({}) is None
    assert extract({"traceparent": ["a", "b"]}) is None


@pytest.mark.parametrize(
    "part",
    ["0x", "+1", "-1", "_1", " 1", "AB", "g1", "\u0660\u0661", "\u00b21"],
)
def test_traceparent_refuses_what_int_would_accept(part):
    """Each id is lowercase hex only: no sign, underscore, space, 0x prefix, upper case or
    other Unicode digits, although int(..., 16) takes several of them."""
    good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    trace = good[:3] + part + good[3 + len(part) :]
    span = good[:36] + part + good[36 + len(part) :]
    assert infratrace.parse_traceparent(good) is not None
    assert infratrace.parse_traceparent(trace) is None
    assert infratrace.parse_traceparent(span) is None
