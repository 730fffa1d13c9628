"""Sampling decides whole traces: once at the local root, inherited by every span of
the trace in this process, carried in the W3C sampled flag; tail decisions (error,
slow) keep whole local traces; the dynamic factor never cuts a trace and recovers with
time; overflow policies; and the accounting stays exact throughout."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any, ClassVar

import pytest

import infratrace
from infratrace import load_config, register_driver
from infratrace._sampling import hash01
from infratrace.instrumentation import format_traceparent, parse_traceparent


class Keep:
    """A driver that keeps the records it is given (optionally after a gate opens)."""

    instances: ClassVar[list[Keep]] = []

    def __init__(self, config: Any, gate: threading.Event | None = None) -> None:
        self.spans: list[Any] = []
        self.gate = gate
        Keep.instances.append(self)

    def write(self, spans: Any) -> None:
        if self.gate is not None:
            self.gate.wait(10)
        self.spans.extend(spans)

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def _keep_driver():
    Keep.instances.clear()
    register_driver("keep", Keep)
    yield
    infratrace.shutdown()


def _account(conn: dict[str, Any]) -> int:
    return (
        conn["written_count"] + conn["dropped_count"] + conn["sampled_out_count"] + conn["queue_len"] + conn["tail_pending_count"]
    )


def _request(vip: bool = False, fail: bool = False, parent: Any = None, sleep: float = 0.0) -> None:
    """One request as the seed's example describes it: an http: root, a service: call
    under it and a method: call under that."""
    with infratrace.begin("http:GET /users/{id}", {"route": "/users/{id}"}, kind="server", parent=parent):
        with infratrace.begin("service:user.load", {"vip": vip}):
            with infratrace.begin("method:UserRepo.get"):
                if sleep:
                    time.sleep(sleep)
        with infratrace.begin("service:audit.write") as audit:
            if fail:
                audit.end(RuntimeError("audit store is down"))


def _traces(spans: list[Any]) -> dict[str, list[Any]]:
    traces: dict[str, list[Any]] = {}
    for s in spans:
        traces.setdefault(s.trace_id, []).append(s)
    return traces


def _assert_whole(spans: list[Any], per_trace: int = 4) -> None:
    """Every written trace has its root and all its spans; no span without its parent."""
    by_id = {s.span_id for s in spans}
    for s in spans:
        assert not s.parent_span_id or s.parent_span_id in by_id, f"orphan: {s.name}"
    for trace_id, members in _traces(spans).items():
        assert len(members) == per_trace, (trace_id, [m.name for m in members])


SEED_RULES = """
[trace]
driver = "keep"
[trace.sample]
rate = 0.5
rules = [
  { name = "http:*", sample = 0.1 },
  { name = "service:*", sample = 0.3 },
  { name = "service:user.*", sample = 1, attrs = { vip = true } },
]
"""


def test_the_seeds_rules_write_whole_traces_decided_by_their_root():
    infratrace.configure(SEED_RULES)
    for i in range(2000):
        _request(vip=i % 7 == 0)
    assert infratrace.force_flush(10)
    (driver,) = Keep.instances
    _assert_whole(driver.spans)
    kept = len(_traces(driver.spans))
    assert 120 <= kept <= 290  # the root's rule (http:* 0.1) decides: ~200 of 2000
    conn = infratrace.stats()["connections"]["default"]
    assert _account(conn) == 8000 and conn["written_count"] == 4 * kept


def test_a_rule_for_inner_spans_decides_the_traces_whose_local_root_it_matches():
    # "service:*" at 0: a trace whose local root is a service: span (a background job)
    # is dropped whole; under an http: root (kept at 1) the service: spans are kept.
    infratrace.configure('[trace]\ndriver = "keep"\n[trace.sample]\nrules = [{ name = "service:*", sample = 0 }]')
    _request()
    with infratrace.begin("service:nightly.job"):
        with infratrace.begin("method:Job.run"):
            pass
    assert infratrace.force_flush(10)
    (driver,) = Keep.instances
    assert sorted(s.name for s in driver.spans) == sorted(
        ["http:GET /users/{id}", "service:user.load", "method:UserRepo.get", "service:audit.write"]
    )


def test_rule_names_are_fnmatch_globs():
    infratrace.configure(
        '[trace]\ndriver = "keep"\n[trace.sample]\nrate = 0\nrules = [{ name = "http:GET /users/?", sample = 1 }]'
    )
    for name in ("http:GET /users/1", "http:GET /users/12", "http:GET /orders/1"):
        with infratrace.begin(name):
            pass
    assert infratrace.force_flush(10)
    assert [s.name for s in Keep.instances[0].spans] == ["http:GET /users/1"]


def test_an_error_keeps_the_whole_local_trace_at_rate_zero():
    infratrace.configure('[trace]\ndriver = "keep"\n[trace.sample]\nrate = 0\nerror = true')
    for i in range(100):
        _request(fail=i % 10 == 3)
    assert infratrace.force_flush(10)
    (driver,) = Keep.instances
    _assert_whole(driver.spans)
    assert len(_traces(driver.spans)) == 10
    assert Counter(s.status for s in driver.spans) == Counter({"ok": 30, "error": 10})
    conn = infratrace.stats()["connections"]["default"]
    assert conn["tail_kept_count"] == 10 and conn["tail_pending_count"] == 0 == conn["tail_pending_traces"]
    assert _account(conn) == 400 and conn["sampled_out_count"] == 360


def test_slow_keeps_traces_whose_local_root_lasted_that_long():
    infratrace.configure('[trace]\ndriver = "keep"\n[trace.sample]\nrate = 0\nerror = false\nslow = "200ms"')
    _request()
    _request(sleep=0.25)
    _request()
    assert infratrace.force_flush(10)
    (driver,) = Keep.instances
    _assert_whole(driver.spans)
    (root,) = [s for s in driver.spans if not s.parent_span_id]
    assert root.duration_ns >= 200_000_000


def test_spans_held_for_a_tail_decision_are_bounded_and_counted():
    infratrace.configure('[trace]\ndriver = "keep"\n[trace.sample]\nrate = 0\npending_spans = 3\npending_traces = 1')
    with infratrace.begin("http:GET /a") as a:
        with infratrace.begin("http:GET /b"):  # a child of a: the same held trace
            pass
        for i in range(4):
            infratrace.trace(f"step {i}")
        # a second trace (another thread: no current span) while the first is held:
        # over pending_traces
        others: list[Any] = []
        job = threading.Thread(target=lambda: others.append(infratrace.begin("job")) or others[0].end())
        job.start()
        job.join()
        a.end(RuntimeError("boom"))
    assert others[0]._ctx is not a._ctx
    assert infratrace.force_flush(10)
    conn = infratrace.stats()["connections"]["default"]
    assert conn["tail_overflow_trace_count"] == 1
    assert conn["tail_overflow_count"] == 2  # 5 spans under a's root, 3 held, and the root
    assert conn["written_count"] == 4 and conn["dropped_count"] == 2 and _account(conn) == 7
    assert conn["tail_pending_count"] == 0


def test_the_incoming_sampled_flag_is_honoured_unless_told_otherwise():
    unsampled = parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")
    sampled = parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01")
    infratrace.configure('[trace]\ndriver = "keep"\n[trace.sample]\nrate = 1\nerror = false')
    with infratrace.start_span("http:GET /", parent=unsampled) as dropped:
        assert format_traceparent(dropped).endswith("-00")  # the true decision goes on
    infratrace.configure('[trace]\ndriver = "keep"\n[trace.sample]\nrate = 0\nerror = false')
    with infratrace.start_span("http:GET /", parent=sampled) as kept:
        assert format_traceparent(kept).endswith("-01")
    infratrace.configure('[trace]\ndriver = "keep"\n[trace.sample]\nrate = 1\nparent = "ignore"')
    with infratrace.start_span("http:GET /", parent=unsampled) as overridden:
        assert format_traceparent(overridden).endswith("-01")
    assert infratrace.force_flush(10)
    written = [d.spans for d in Keep.instances]
    assert [len(w) for w in written] == [0, 1, 1]


def test_a_trace_no_connection_keeps_propagates_unsampled():
    infratrace.configure('[trace]\ndriver = "keep"\n[trace.sample]\nrate = 0')
    with infratrace.begin("http:GET /") as root, infratrace.begin("client call") as child:
        assert format_traceparent(child).endswith("-00") and root.flags == 0
        headers: dict[str, str] = {}
        infratrace.inject(headers)
        assert headers["traceparent"].endswith("-00")


def test_a_client_choosing_its_trace_ids_cannot_choose_to_be_kept():
    # Ids an unsalted hash would keep at 10 %: with the salt, about 10 % of them again.
    chosen = [t for t in range(1, 200_000) if hash01(t << 64) < 0.1][:2000]
    infratrace.configure('[trace]\ndriver = "keep"\n[trace.sample]\nrate = 0.1\nerror = false')
    for tid in chosen:
        parent = infratrace.SpanContext(tid << 64, 1, flags=1)
        with infratrace.start_span("http:GET /", parent=parent, kind="server"):
            pass
    # those carried a sampled parent, honoured; now the same ids as new decisions:
    infratrace.configure('[trace]\ndriver = "keep"\n[trace.sample]\nrate = 0.1\nerror = false\nparent = "ignore"')
    for tid in chosen:
        parent = infratrace.SpanContext(tid << 64, 1, flags=1)
        with infratrace.start_span("http:GET /", parent=parent, kind="server"):
            pass
    assert infratrace.force_flush(10)
    honoured, decided = (len(d.spans) for d in Keep.instances)
    assert honoured == 2000
    assert 120 <= decided <= 290


def test_a_salt_makes_decisions_agree_across_processes():
    config = '[trace]\ndriver = "keep"\n[trace.sample]\nrate = 0.5\nerror = false\nsalt = "deployment-7"'
    a = load_config(config).connections[0].sample
    from infratrace._sampling import Sampler

    one, two = Sampler(a), Sampler(a)
    decisions = [one.decide(t, "x", {}, None, 1.0) == two.decide(t, "x", {}, None, 1.0) for t in range(1, 1000)]
    assert all(decisions)


def test_the_dynamic_factor_applies_to_roots_only_and_recovers_when_idle():
    gate = threading.Event()
    register_driver("slow", lambda c: Keep(c, gate))
    infratrace.configure('[trace]\ndriver = "slow"\nbuffer = 50\noverflow = "sample"')
    for _ in range(150):  # backlog of 200: fills while the driver waits
        _request()
    conn = infratrace.stats()["connections"]["default"]
    assert conn["dynamic_sample_factor"] < 1.0
    gate.set()
    assert infratrace.force_flush(10)
    (driver,) = Keep.instances
    _assert_whole(driver.spans)  # sampled harder, but never a trace cut
    deadline = time.monotonic() + 6
    while infratrace.stats()["dynamic_sample_factor"] < 1.0 and time.monotonic() < deadline:
        time.sleep(0.2)  # no span arrives meanwhile
    assert infratrace.stats()["dynamic_sample_factor"] == 1.0
    conn = infratrace.stats()["connections"]["default"]
    assert _account(conn) == 600


def test_overflow_drop_counts_and_drops():
    gate = threading.Event()
    register_driver("slow", lambda c: Keep(c, gate))
    infratrace.configure('[trace]\ndriver = "slow"\nbuffer = 10\noverflow = "drop"')
    for i in range(200):
        infratrace.trace(f"e{i}")
    conn = infratrace.stats()["connections"]["default"]
    assert conn["dropped_full_count"] > 0 and conn["dynamic_sample_factor"] == 1.0 and conn["sampled_out_count"] == 0
    gate.set()
    assert infratrace.force_flush(10)
    assert _account(infratrace.stats()["connections"]["default"]) == 200


def test_a_burst_to_a_local_file_writes_every_span(tmp_path):
    path = tmp_path / "burst.jsonl"
    infratrace.configure(f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{path}"')
    for _i in range(100_000):
        infratrace.trace("burst")
    assert infratrace.force_flush(30)
    stats = infratrace.stats()
    conn = stats["connections"]["default"]
    assert conn["written_count"] == 100_000 and conn["dropped_count"] == 0 and conn["sampled_out_count"] == 0
    assert stats["sync_fallback_count"] == conn["sync_fallback_count"]
    with path.open("rb") as f:
        assert sum(1 for _ in f) == 100_000
