"""Sampling: ratio, rules, attrs, errors, hash keys, trace consistency,
the dynamic factor — statistically and through a real connection."""

from __future__ import annotations

import random

import pytest

import infratrace
from infratrace._config import SampleConfig, SampleRule
from infratrace._pipeline import dynamic_factor
from infratrace._sampling import Sampler, hash01
from infratrace._span import SpanContext
from infratrace._spandata import SpanData
from tests.spans import span_data


def span(name: str = "x", attrs: dict | None = None, trace_id: int | None = None, status: str = "ok") -> SpanData:
    parent = None if trace_id is None else SpanContext(trace_id, 1)
    return span_data(name, attrs, parent=parent, status=status if status == "error" else None)


def test_hash01_is_deterministic_uniform_and_in_range():
    values = [hash01(random.getrandbits(128)) for _ in range(20000)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert abs(sum(values) / len(values) - 0.5) < 0.01
    assert hash01(12345) == hash01(12345)
    # sequential ids (not random) still spread evenly
    seq = [hash01(i) for i in range(1, 20001)]
    assert abs(sum(v < 0.2 for v in seq) / len(seq) - 0.2) < 0.015


def test_rate_02_over_20000_traces_keeps_20_percent(span_file):
    out = span_file("sample = 0.2\nbuffer = 100000")
    for _ in range(20000):
        with infratrace.begin("http:GET /"):
            infratrace.begin("service:child").end()
    spans = out.spans()
    traces = {s["trace_id"] for s in spans}
    assert abs(len(traces) / 20000 - 0.2) <= 0.015
    # whole traces: every kept trace has both its spans
    per_trace: dict[str, int] = {}
    for s in spans:
        per_trace[s["trace_id"]] = per_trace.get(s["trace_id"], 0) + 1
    assert set(per_trace.values()) == {2}
    stats = infratrace.stats()["connections"]["default"]
    assert stats["written_count"] + stats["sampled_out_count"] + stats["dropped_count"] == 40000
    assert stats["written_count"] == len(spans)


def test_rules_first_match_wins_and_attrs_must_all_match():
    sampler = Sampler(
        SampleConfig(
            rate=0.5,
            rules=(
                SampleRule("service:user.*", 1.0, (("vip", "true"),)),
                SampleRule("http:*", 0.0),
                SampleRule("service:*", 0.3),
                SampleRule("exact", 0.0),
            ),
        )
    )
    assert sampler.ratio_for("service:user.login", {"vip": True}) == 1.0
    assert sampler.ratio_for("service:user.login", {"vip": "true"}) == 1.0
    assert sampler.ratio_for("service:user.login", {"vip": False}) == 0.3
    assert sampler.ratio_for("service:user.login", {}) == 0.3
    assert sampler.ratio_for("http:GET /", {}) == 0.0
    assert sampler.ratio_for("exact", {}) == 0.0
    assert sampler.ratio_for("exactly", {}) == 0.5
    assert sampler.ratio_for("other", {}) == 0.5


def test_rule_names_are_globs_with_fnmatch_semantics():
    sampler = Sampler(SampleConfig(rate=0.5, rules=(SampleRule("http:GET /users/[0-9]*", 1.0), SampleRule("*.?", 0.0))))
    assert sampler.ratio_for("http:GET /users/42", {}) == 1.0
    assert sampler.ratio_for("http:GET /users/me", {}) == 0.5
    assert sampler.ratio_for("method:a.b", {}) == 0.0
    assert sampler.ratio_for("method:a.bc", {}) == 0.5
    assert sampler.ratio_for("HTTP:GET /users/42", {}) == 0.5  # case-sensitive


def _decide(sampler: Sampler, name: str = "x", attrs: dict | None = None, trace_id: int | None = None) -> bool:
    tid = random.getrandbits(128) if trace_id is None else trace_id
    return sampler.decide(tid, name, attrs or {}, None, 1.0)


def test_empty_rule_name_matches_everything_and_attrs_compare_as_strings():
    sampler = Sampler(SampleConfig(rate=0.0, rules=(SampleRule("", 1.0, (("tier", "2"),)),)))
    assert _decide(sampler, "a", {"tier": 2})
    assert not _decide(sampler, "a", {"tier": 3})


def test_per_span_keys_keep_error_spans_unless_disabled():
    assert Sampler(SampleConfig(rate=0.0, key="span_id")).keep_span(span(status="error"))
    assert not Sampler(SampleConfig(rate=0.0, key="span_id", error=False)).keep_span(span(status="error"))


def test_trace_id_decisions_give_the_configured_ratio():
    sampler = Sampler(SampleConfig(rate=0.3))
    kept = sum(_decide(sampler) for _ in range(20000))
    assert abs(kept / 20000 - 0.3) < 0.015


@pytest.mark.parametrize("key", ["span_id", "trace_span"])
def test_per_span_keys_give_the_configured_ratio(key):
    sampler = Sampler(SampleConfig(rate=0.3, key=key))
    assert sampler.per_span
    kept = sum(sampler.keep_span(span()) for _ in range(20000))
    assert abs(kept / 20000 - 0.3) < 0.015


def test_span_id_key_decides_per_span():
    by_span = Sampler(SampleConfig(rate=0.5, key="span_id"))
    mixed_span = 0
    for _ in range(500):
        tid = random.getrandbits(128)
        members = [span(trace_id=tid) for _ in range(6)]
        mixed_span += len({by_span.keep_span(s) for s in members}) > 1
    assert mixed_span > 400


def test_the_same_salt_gives_the_same_decisions_and_another_salt_others():
    one, two = Sampler(SampleConfig(rate=0.5, salt="a")), Sampler(SampleConfig(rate=0.5, salt="a"))
    other = Sampler(SampleConfig(rate=0.5, salt="b"))
    ids = [random.getrandbits(128) for _ in range(2000)]
    assert [_decide(one, trace_id=t) for t in ids] == [_decide(two, trace_id=t) for t in ids]
    differ = sum(_decide(one, trace_id=t) != _decide(other, trace_id=t) for t in ids)
    assert 800 < differ < 1200  # independent decisions: about half differ


def test_dynamic_factor_thresholds():
    assert [dynamic_factor(x) for x in (0.0, 0.79, 0.8, 0.89, 0.9, 0.94, 0.95, 1.0)] == [
        1.0,
        1.0,
        0.5,
        0.5,
        0.2,
        0.2,
        0.1,
        0.1,
    ]


def test_factor_multiplies_the_ratio():
    sampler = Sampler(SampleConfig(rate=1.0))
    kept = sum(sampler.decide(random.getrandbits(128), "x", {}, None, 0.5) for _ in range(20000))
    assert abs(kept / 20000 - 0.5) < 0.015


def test_a_parents_flag_decides_unless_ignored_and_the_factor_never_overrides_it():
    honor, ignore = Sampler(SampleConfig(rate=0.0)), Sampler(SampleConfig(rate=0.0, parent="ignore"))
    assert honor.decide(7, "x", {}, 0x01, 0.1) and not honor.decide(7, "x", {}, 0x00, 1.0)
    assert not ignore.decide(7, "x", {}, 0x01, 1.0)


def test_each_connection_samples_on_its_own(tmp_path):
    all_path, few_path = tmp_path / "all.jsonl", tmp_path / "few.jsonl"
    infratrace.configure(
        f"""
[trace.all]
driver = "file"
json = true
buffer = 10000
[trace.all.setting]
output = "{all_path}"
[trace.few]
driver = "file"
json = true
buffer = 10000
[trace.few.setting]
output = "{few_path}"
[trace.few.sample]
rate = 0
rules = [{{ name = "keep:*", sample = 1 }}]
"""
    )
    for i in range(100):
        infratrace.trace(f"keep:{i}")
        infratrace.trace(f"drop:{i}")
    infratrace.trace("failed", {"status": "error"})
    infratrace.force_flush()
    assert len(all_path.read_text().splitlines()) == 201
    few = few_path.read_text()
    assert few.count("keep:") == 100 and "drop:" not in few and "failed" in few
    stats = infratrace.stats()["connections"]
    assert stats["few"]["sampled_out_count"] == 100
    infratrace.shutdown()
