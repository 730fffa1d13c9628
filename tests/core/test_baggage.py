"""W3C Baggage: the context API, the wire format and its limits, inject/extract."""

from __future__ import annotations

import asyncio
import contextvars

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import infratrace
from infratrace import baggage


def test_set_get_remove_within_a_context_copy():
    def body() -> dict[str, str]:
        baggage.set("tenant", "acme")
        baggage.set("user.id", "42")
        baggage.remove("user.id")
        baggage.remove("absent")
        assert baggage.get("tenant") == "acme"
        assert baggage.get("user.id") is None
        assert baggage.get("user.id", "none") == "none"
        return baggage.get_all()

    assert contextvars.copy_context().run(body) == {"tenant": "acme"}
    assert baggage.get_all() == {}  # the copy's change stayed in the copy


def test_scope_adds_for_a_block_and_restores():
    with baggage.scope({"a": "1"}):
        with baggage.scope({"b": "2", "a": "x"}) as inner:
            assert dict(inner) == {"a": "x", "b": "2"}
            assert baggage.get_all() == {"a": "x", "b": "2"}
        assert baggage.get_all() == {"a": "1"}
    assert baggage.get_all() == {}


def test_attach_detach_and_clear():
    token = baggage.attach({"k": "v"})
    assert baggage.get("k") == "v"
    baggage.clear()
    assert baggage.get_all() == {}
    baggage.detach(token)
    assert baggage.get_all() == {}
    baggage.detach(token)  # twice: harmless


def test_the_mapping_a_context_holds_cannot_be_changed_in_place():
    with baggage.scope({"a": "1"}) as entries:
        with pytest.raises(TypeError):
            entries["a"] = "2"  # type: ignore[index]
        snapshot = baggage.get_all()
        snapshot["a"] = "changed"
        assert baggage.get("a") == "1"


@pytest.mark.parametrize(("name", "value"), [("bad name", "v"), ("", "v"), ("ok", 3), (7, "v"), ("a,b", "v")])
def test_invalid_names_and_values_are_refused_with_a_clear_error(name, value):
    with pytest.raises(ValueError, match="baggage"):
        baggage.set(name, value)
    assert baggage.get_all() == {}


def test_asyncio_tasks_each_have_their_own():
    async def task(n: int) -> str | None:
        baggage.set("n", str(n))
        await asyncio.sleep(0)
        return baggage.get("n")

    async def main() -> list[str | None]:
        return list(await asyncio.gather(*(task(n) for n in range(5))))

    assert asyncio.run(main()) == ["0", "1", "2", "3", "4"]


# -- wire format ---------------------------------------------------------------------
def test_parse_skips_invalid_members_drops_properties_and_decodes():
    header = "a=b%20c;prop=1, bad key=1,k2 = v2 ,=x,noequals,k3=%E2%82%AC"
    assert baggage.parse_baggage(header) == {"a": "b c", "k2": "v2", "k3": "€"}


def test_format_percent_encodes_and_round_trips():
    entries = {"tenant": "acme co", "path": "/a,b;c=d", "unicode": "é€"}
    header = baggage.format_baggage(entries)
    assert " " not in header and ";" not in header.replace("%3B", "")
    assert baggage.parse_baggage(header) == entries


def test_limits_on_the_way_in_and_out():
    many = ",".join(f"k{i}=v" for i in range(500))
    assert len(baggage.parse_baggage(many)) == baggage.MAX_MEMBERS
    huge = "a=" + "x" * 10_000 + ",b=1"
    assert baggage.parse_baggage(huge) == {}  # the only member that fits the header limit is over the member limit
    big_out = {f"k{i}": "x" * 1000 for i in range(20)}
    header = baggage.format_baggage(big_out)
    assert len(header) <= baggage.MAX_HEADER_BYTES
    assert 0 < len(baggage.parse_baggage(header)) < 20
    assert baggage.format_baggage({"long": "y" * 5000}) == ""


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_parsing_any_text_never_raises_and_yields_tokens(header):
    parsed = baggage.parse_baggage(header)
    assert len(parsed) <= baggage.MAX_MEMBERS
    for name, value in parsed.items():
        assert isinstance(name, str) and name and isinstance(value, str)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.from_regex(r"[A-Za-z0-9_.\-]{1,20}", fullmatch=True), st.text(max_size=50), max_size=10))
def test_format_then_parse_is_the_identity(entries):
    assert baggage.parse_baggage(baggage.format_baggage(entries)) == entries


# -- inject / extract ----------------------------------------------------------------
def test_inject_writes_baggage_with_and_without_a_span():
    infratrace.configure({"trace": {"driver": "discard"}})
    assert infratrace.inject({}) == {}
    with baggage.scope({"tenant": "acme"}):
        assert infratrace.inject({}) == {"baggage": "tenant=acme"}
        with infratrace.begin("x") as span:
            headers = infratrace.inject({})
    assert headers["baggage"] == "tenant=acme"
    assert headers["traceparent"] == infratrace.format_traceparent(span)


def test_extract_baggage_from_any_header_case_and_lists():
    assert infratrace.extract_baggage({"Baggage": "a=1"}) == {"a": "1"}
    assert infratrace.extract_baggage({"baggage": ["a=1", "b=2"]}) == {"a": "1", "b": "2"}
    assert infratrace.extract_baggage({"baggage": b"a=1"}) == {"a": "1"}
    assert infratrace.extract_baggage({}) == {}


def test_a_carrier_that_refuses_keys_does_not_break_the_caller():
    class Refusing(dict):  # type: ignore[type-arg]
        def __setitem__(self, key, value):
            raise RuntimeError("read-only")

    with baggage.scope({"a": "1"}):
        assert infratrace.inject(Refusing()) == {}
