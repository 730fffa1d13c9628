"""Attribute limits and hostile values: at most [limits] attributes, text and lists cut,
every cut counted; a value no output can hold becomes a bounded, valid one, and a span
that still cannot be encoded is lost alone — its neighbours are written."""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar

import pytest

import infratrace


@pytest.fixture
def jsonl(tmp_path):
    path = tmp_path / "limits.jsonl"

    def configure(limits: str = "") -> Any:
        infratrace.configure(f'{limits}\n[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{path}"\n')
        return path

    yield configure
    infratrace.shutdown()


def _lines(path) -> list[dict[str, Any]]:
    assert infratrace.force_flush(10)
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_limits_cut_and_count(jsonl):
    path = jsonl("[limits]\nattributes = 5\nvalue_length = 10\nlist_items = 3")
    before = infratrace.stats()["attribute_truncated_count"]
    attrs = {f"k{i}": i for i in range(8)}  # 3 over the limit
    attrs["k0"] = "x" * 50  # cut to 10
    attrs["k1"] = ["abcdefghijklmnop", 2, 3, 4, 5]  # 5 items: cut to 3, the text cut to 10
    infratrace.trace("limited", attrs)
    (span,) = _lines(path)
    assert span["attributes"] == {"k0": "x" * 10, "k1": ["abcdefghij", 2, 3], "k2": 2, "k3": 3, "k4": 4}
    assert infratrace.stats()["attribute_truncated_count"] - before == 3 + 1 + 1 + 1


def test_the_defaults_are_128_attributes_and_8192_characters(jsonl):
    path = jsonl()
    infratrace.trace("big", {f"a{i}": "v" * 10_000 for i in range(200)})
    (span,) = _lines(path)
    assert len(span["attributes"]) == 128
    assert {len(v) for v in span["attributes"].values()} == {8192}


class Hostile:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")

    __repr__ = __str__


def _cyclic() -> list[Any]:
    value: list[Any] = [1]
    value.append(value)
    return value


def _deep(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


HOSTILE = {
    "cycle": _cyclic(),
    "cyclic_dict": (d := {"a": 1}, d.__setitem__("self", d))[0],
    "deep": _deep(3000),
    "huge_int": 10**5000,
    "nan": math.nan,
    "inf": -math.inf,
    "bytes": b"\xff\xfeok",
    "object": Hostile(),
    "surrogate": "a\udc80b",
    "long_list": list(range(100_000)),
}


def test_hostile_values_cost_nothing_but_themselves(jsonl):
    path = jsonl()
    for i in range(20):
        infratrace.trace(f"before {i}")
    infratrace.trace("hostile", HOSTILE)
    with infratrace.begin(Hostile()) as named:  # a name whose __str__ raises
        named.set_attribute(Hostile(), Hostile())  # type: ignore[arg-type]
    for i in range(20):
        infratrace.trace(f"after {i}")
    spans = _lines(path)
    assert len(spans) == 42  # nothing lost: neither the hostile spans nor their neighbours
    hostile = next(s for s in spans if s["name"] == "hostile")["attributes"]
    assert set(hostile) == set(HOSTILE)
    for value in hostile.values():
        assert len(json.dumps(value)) < 20_000  # bounded
    assert hostile["nan"] == "nan" and hostile["inf"] == "-inf"
    assert hostile["object"] == "<unprintable Hostile>"
    assert len(hostile["long_list"]) == 1000
    conn = infratrace.stats()["connections"]["default"]
    assert conn["written_count"] == 42 and conn["dropped_count"] == 0


class Picky:
    """A driver whose encoding fails for some spans (a bug, a value it cannot take)."""

    lines: ClassVar[list[str]] = []

    def __init__(self, config: Any) -> None:
        Picky.lines = []

    def encode(self, span: Any) -> str:
        if span.name.startswith("bad"):
            raise ValueError(f"cannot encode {span.name}")
        return span.name

    def write_encoded(self, items: list[str]) -> None:
        Picky.lines.extend(items)

    def write(self, spans: Any) -> None:
        self.write_encoded([self.encode(s) for s in spans])

    def close(self) -> None:
        pass


def test_a_span_that_cannot_be_encoded_is_lost_alone_and_counted():
    infratrace.register_driver("picky", Picky)
    infratrace.configure('[trace]\ndriver = "picky"')
    try:
        for i in range(30):
            infratrace.trace(f"bad {i}" if i % 10 == 3 else f"good {i}")
        assert infratrace.force_flush(10)
        conn = infratrace.stats()["connections"]["default"]
        assert len(Picky.lines) == 27 and conn["written_count"] == 27
        assert conn["encode_error_count"] == 3 and conn["dropped_count"] == 3
        assert conn["written_count"] + conn["dropped_count"] + conn["sampled_out_count"] == 30
    finally:
        infratrace.shutdown()
