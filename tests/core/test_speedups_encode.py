"""The C stable-schema encoder (infratrace._speedups.StableLines, csrc/speedups/encode.c)
against its reference, the pure-Python StableJSONLine: the same line, byte for byte,
for every span, whether the C code writes it or hands it to the Python code."""

from __future__ import annotations

import gc
import math
import random
import struct
import sys
import weakref
from typing import Any

import pytest

from infratrace import _fields, _span
from infratrace._fields import ResourceView, StableJSONLine

speedups = pytest.importorskip("infratrace._speedups")
if not hasattr(speedups, "StableLines"):  # pragma: no cover
    pytest.skip("this build of infratrace._speedups has no StableLines", allow_module_level=True)

SpanBase = speedups.SpanBase
StableLines = speedups.StableLines

OFFSET = 1_764_000_000_000_000_000 - 5_000_000_000_000  # unix ns minus a perf_counter_ns reading
T0 = 5_000_123_456_789
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

RESOURCE = ResourceView({"service.name": "checkout", "project": "shop", "profile": "prod", "node": "web-1", "process.pid": 4242})
ODD_RESOURCE = ResourceView({"service.name": 'sé"r\\v\u2028', "project": "p\x01", "node": "ñ", "list": [1, 2.5e-05]})


def make_span(
    name: Any = "GET /users/{id}",
    attrs: Any = None,
    kind: Any = "server",
    *,
    t0: int = T0,
    t1: int | None = None,
    status: Any = None,
    events: Any = None,
    tid: int = 0x0123456789ABCDEF0123456789ABCDEF,
    sid: int = 0x1122334455667788,
    pid: int = 0,
) -> Any:
    s = SpanBase("x", {}, "internal", None)
    s.name = name
    s.kind = kind
    s.attributes = {} if attrs is None else attrs
    s._t0 = t0
    s._t1 = t0 + 1_234_567 if t1 is None else t1
    s._status = status
    s._events = events
    s._tid = tid
    s._sid = sid
    s._pid = pid
    return s


class Pair:
    """The C encoder and its pure-Python reference for one resource and flag."""

    def __init__(self, resource: ResourceView = RESOURCE, flag: str = "") -> None:
        self.py = StableJSONLine(resource, flag)
        self.c = StableLines(self.py._tail, self.py._service, self.py)

    def _run(self, call: Any, off: int) -> Any:
        saved = _span._clock_offset_ns
        _span._clock_offset_ns = off  # what the fallback (the Python code) reads
        try:
            return ("ok", call())
        except Exception as exc:
            return ("error", type(exc))
        finally:
            _span._clock_offset_ns = saved

    def expected_line(self, span: Any, off: int = OFFSET) -> Any:
        return self._run(lambda: self.py(span), off)

    def expected_chunk(self, spans: list[Any], start: int, stop: int, off: int = OFFSET) -> Any:
        return self._run(lambda: ("\n".join([self.py(s) for s in spans[start:stop]]) + "\n").encode("utf-8", "replace"), off)

    def check(self, span: Any, off: int = OFFSET) -> str:
        got = self._run(lambda: self.c.line(span, off), off)
        want = self.expected_line(span, off)
        assert got == want, (got, want)
        assert self._run(lambda: self.c.chunk([span], 0, 1, off), off) == self.expected_chunk([span], 0, 1, off)
        return got[1] if got[0] == "ok" else ""

    def check_chunk(self, spans: list[Any], start: int, stop: int, off: int = OFFSET) -> None:
        got = self._run(lambda: self.c.chunk(spans, start, stop, off), off)
        assert got == self.expected_chunk(spans, start, stop, off)


class CountingFallback:
    """A StableJSONLine that counts the spans handed to it."""

    def __init__(self, resource: ResourceView = RESOURCE) -> None:
        self.py = StableJSONLine(resource)
        self.calls = 0

    def __call__(self, span: Any) -> str:
        self.calls += 1
        return self.py(span)


def c_handles(span: Any, resource: ResourceView = RESOURCE) -> bool:
    """Whether the C code writes the span's line itself (no fallback)."""
    fallback = CountingFallback(resource)
    c = StableLines(fallback.py._tail, fallback.py._service, fallback)
    saved = _span._clock_offset_ns
    _span._clock_offset_ns = OFFSET
    try:
        c.line(span, OFFSET)
    except Exception:
        return False
    finally:
        _span._clock_offset_ns = saved
    return fallback.calls == 0


# -- fixed cases ---------------------------------------------------------------------
def test_a_typical_span_is_written_by_c():
    pair = Pair()
    span = make_span(attrs={"user.id": 1001, "route": "/users/{id}", "weight": 2.5, "service": "api", "target": "/u"})
    line = pair.check(span)
    assert line.startswith('{"trace_id":"0123456789abcdef0123456789abcdef","span_id":"1122334455667788"')
    assert c_handles(span)


@pytest.mark.parametrize("flag", ["", "blue", 'fl"ag\n', "ü"])
@pytest.mark.parametrize("resource", [RESOURCE, ODD_RESOURCE], ids=["plain", "odd"])
def test_resource_and_flag(resource, flag):
    pair = Pair(resource, flag)
    for span in (make_span(), make_span(attrs={"service": "other"}), make_span(pid=1)):
        pair.check(span)
    assert c_handles(make_span(), resource)


STRINGS = [
    "",
    "plain",
    'quo"te',
    "back\\slash",
    '\\\\""',
    "".join(chr(c) for c in range(0x20)) + "\x7f",
    "\u2028\u2029",
    "héllo wörld",
    "日本語テキスト",
    "emoji 😀 and 𝄞",
    "mixed \x00 é 日 😀 \n",
    "\xff\xfe latin-1 range",
    "a" * 5000,
    "é" * 3000 + "\n",
    "/users/{id}?q=1&x=<y>",
]


@pytest.mark.parametrize("text", STRINGS)
def test_strings_everywhere(text):
    pair = Pair()
    spans = [
        make_span(name=text),
        make_span(attrs={text: text}),
        make_span(attrs={"service": text}),
        make_span(attrs={"target": text}),
        make_span(status=("error", 500, text)),
    ]
    for span in spans:
        pair.check(span)
        assert c_handles(span)


@pytest.mark.parametrize("code", [*range(0x20), 0x7F, 0x80, 0x2028, 0xFFFF, 0x10FFFF])
def test_every_control_character(code):
    pair = Pair()
    text = f"a{chr(code)}b"
    pair.check(make_span(name=text, attrs={"k" + text: text}, status=("error", 1, text)))


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "😀\ud83d", "\ud83d\ude00"])
def test_lone_surrogates_go_to_the_fallback(text):
    pair = Pair()
    for span in (
        make_span(name=text),
        make_span(attrs={"k": text}),
        make_span(attrs={text: 1}),
        make_span(attrs={"service": text}),
        make_span(attrs={"target": text}),
        make_span(status=("error", 1, text)),
        make_span(kind=text),
        make_span(status=(text, 1, "m")),
    ):
        pair.check(span)
        assert not c_handles(span)


def test_kind_and_status_are_written_raw_by_python():
    # The Python code writes kind and status[0] between quotes unescaped: a character
    # that needs escaping sends the span to the fallback, so the lines stay the same.
    pair = Pair()
    for odd in ('se"rver', "a\\b", "a\nb", "\x7f", "ñ"):
        for span in (make_span(kind=odd), make_span(status=(odd, 2, "m"))):
            pair.check(span)
    assert c_handles(make_span(kind="ñ"))
    assert not c_handles(make_span(kind='se"rver'))
    assert not c_handles(make_span(status=("a\nb", 2, "m")))


@pytest.mark.parametrize(
    "value",
    [True, False, None, 0, 1, -1, 1001, INT64_MAX, INT64_MIN, 2**53 + 1, -(2**53) - 1],
)
def test_scalars_written_by_c(value):
    pair = Pair()
    span = make_span(attrs={"v": value, "after": "x"})
    pair.check(span)
    assert c_handles(span)


@pytest.mark.parametrize("value", [INT64_MAX + 1, INT64_MIN - 1, 2**64 - 1, 2**64, 10**40, -(10**40)])
def test_ints_beyond_int64_go_to_the_fallback(value):
    pair = Pair()
    span = make_span(attrs={"v": value})
    pair.check(span)
    assert not c_handles(span)


C_FLOATS = [0.0, -0.0, 0.1, 2.5, -2.5, 1.0, 123456.789, 1e15, 999999999999999.9, 0.0001, 1 / 3, 2.0**52, 1e-4 * 1.5]
PY_FLOATS = [1e16, -1e16, 2.5e-05, 1e-05, 5e-324, 1.7976931348623157e308, math.nan, math.inf, -math.inf, 1e22]


@pytest.mark.parametrize("value", C_FLOATS)
def test_plain_floats_written_by_c(value):
    pair = Pair()
    span = make_span(attrs={"f": value})
    pair.check(span)
    assert c_handles(span)


@pytest.mark.parametrize("value", PY_FLOATS)
def test_exponent_nan_and_inf_floats_go_to_the_fallback(value):
    pair = Pair()
    span = make_span(attrs={"f": value})
    pair.check(span)
    assert not c_handles(span)


class Color(int):
    pass


class Text(str):
    pass


@pytest.mark.parametrize(
    "attrs",
    [
        {"nested": {"a": 1}},
        {"list": [1, 2]},
        {"tuple": (1, "a")},
        {"set": {1}},
        {"bytes": b"ab\xff"},
        {"sub": Color(3)},
        {"sub": Text("x")},
        {Text("k"): 1},
        {1: "non-str key"},
        {None: 1},
        {"obj": object()},
        {"service": 5},
        {"service": True},
        {"service": 0},
        {"service": False},
        {"service": ["a"]},
        {"target": 7},
        {"target": False},
        {"target": {"a": 1}},
    ],
    ids=repr,
)
def test_other_values_go_to_the_fallback(attrs):
    pair = Pair()
    span = make_span(attrs=attrs)
    pair.check(span)
    assert not c_handles(span)


@pytest.mark.parametrize(
    "attrs",
    [
        {},
        {"service": "api"},
        {"service": ""},
        {"service": None},
        {"target": ""},
        {"target": None},
        {"target": "/r", "service": "s"},
        {"a": 1, "service": "ñ", "b": None, "target": "日本"},
    ],
    ids=repr,
)
def test_service_and_target(attrs):
    pair = Pair()
    span = make_span(attrs=attrs)
    pair.check(span)
    assert c_handles(span)


@pytest.mark.parametrize(
    "status",
    [
        None,
        ("error", 500, "boom"),
        ("error", 0, ""),
        ("error", True, "t"),
        ("error", False, "f"),
        ("error", -7, 'odd "message"\n\\ \x00 ñ 😀'),
        ("error", INT64_MAX, "m"),
        ("error", INT64_MIN, "m"),
    ],
    ids=repr,
)
def test_status_written_by_c(status):
    pair = Pair()
    span = make_span(status=status)
    pair.check(span)
    assert c_handles(span)


@pytest.mark.parametrize(
    "status",
    [
        ("error", 2**70, "m"),
        ("error", Color(2), "m"),
        ("error", 2.0, "m"),
        ("error", "500", "m"),
        ("error", 1, None),
        ("error", 1, 5),
        ("error", 1, ["m"]),
        (Text("error"), 1, "m"),
        ["error", 1, "m"],
        ("error", 1, "m", "extra"),
        ("error", 1),
        (),
        "error",
    ],
    ids=repr,
)
def test_other_statuses_go_to_the_fallback(status):
    pair = Pair()
    span = make_span(status=status)
    pair.check(span)
    assert not c_handles(span)


def test_events():
    pair = Pair()
    assert c_handles(make_span(events=[]))
    pair.check(make_span(events=[]))
    with_events = make_span(events=[("retry", OFFSET + T0 + 5, {"n": 1}), ("done", OFFSET + T0 + 9, {})])
    pair.check(with_events)
    assert not c_handles(with_events)
    pair.check(make_span(events=()))


@pytest.mark.parametrize("pid", [0, 1, 2**64 - 1, 0x00000000000000FF])
@pytest.mark.parametrize("tid", [1, 2**128 - 1, 2**64, 2**64 - 1, 0xABC << 100])
def test_ids(tid, pid):
    pair = Pair()
    span = make_span(tid=tid, sid=2**64 - 1 if pid else 1, pid=pid)
    line = pair.check(span)
    assert f'"trace_id":"{tid:032x}"' in line
    assert f'"parent_span_id":"{pid:016x}"' in line if pid else '"parent_span_id":""' in line


@pytest.mark.parametrize(
    ("t0", "t1", "off"),
    [
        (T0, T0, OFFSET),  # zero duration
        (T0, T0 + 1, OFFSET),
        (T0, T0 + 999, OFFSET),
        (T0, T0 + 10**15, OFFSET),
        (T0, T0 + 2**53 + 1, OFFSET),  # the int -> float rounding of the duration
        (T0, T0 - 5_000_000, OFFSET),  # negative duration
        (T0, 0, OFFSET),  # not ended
        (0, 0, 1_000_000_000),  # start: exactly ten digits
        (0, 123, 1_000_000_000),
        (0, -999_999_999, 1_000_000_000),  # end: a short text, end[:-6] == ""
        (0, -2_000_000_000, 1_000_000_000),  # end negative
        (0, 5, 999_999_999),  # start: nine digits -> the Python code fails
        (0, 5, 0),
        (-(10**12), 5, 0),  # start negative
        (1, 1, INT64_MAX - 1),
        (T0, T0 + 7, INT64_MAX - T0 - 3),  # end beyond int64
        (T0, T0 + 7, 2**63 + 5),  # an offset beyond int64: all to the fallback
        (INT64_MIN, INT64_MAX, 0),
        (T0, T0 + 7, -OFFSET),
        (0, 86_400_000_000_000, 951_782_400 * 10**9),  # 2000-02-29
        (0, 1, 4_102_444_799_999_999_999),  # 2099-12-31T23:59:59.999999
    ],
)
def test_times(t0, t1, off):
    pair = Pair()
    pair.check(make_span(t0=t0, t1=t1), off)


def test_durations():
    # duration_ms is repr((t1 - t0) / 1e6): the C code writes the digits of the
    # difference with a point where that is provably the same text.
    rng = random.Random(99)
    pair = Pair()
    cases = [0, 1, 99, 100, 101, 999_999, 1_000_000, 1_000_001, 10**15 - 1, 10**15, 10**15 + 1, 2**53 - 1, 2**53 + 1]
    cases += [rng.randint(0, 10 ** rng.randint(1, 17)) for _ in range(3000)]
    cases += [rng.randint(1, 1000) * 10 ** rng.randint(0, 14) for _ in range(300)]
    for n in cases:
        for d in (n, -n):
            span = make_span(t0=T0 + 10**16, t1=T0 + 10**16 + d)
            line = pair.check(span)
            assert f'"duration_ms":{d / 1e6!r},' in line


def test_random_floats():
    rng = random.Random(2024)
    values = []
    for _ in range(3000):
        values.append(struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0])
        values.append(rng.random() * 10 ** rng.uniform(-6, 17) * rng.choice((1, -1)))
        values.append(round(rng.uniform(-1e7, 1e7), rng.randint(0, 10)))
        values.append(rng.randint(-(10**15), 10**15) / 10 ** rng.randint(0, 16))
        values.append(float(rng.randint(-(2**53), 2**53)))
    values += [0.0001, 0.00010000000000000002, 9.999999999999999e-05, 1e15 - 0.5, 999999999999999.9, 1e15, 0.1 + 0.2]
    pair = Pair()
    chunk = []
    for v in values:
        span = make_span(attrs={"f": v})
        pair.check(span)
        chunk.append(span)
    pair.check_chunk(chunk, 0, len(chunk))


def test_timestamp_cache_follows_the_second():
    pair = Pair()
    base = 1_764_000_000 * 10**9
    for k in range(50):
        pair.check(make_span(t0=0, t1=5), base + k * 499_999_937)
        pair.check(make_span(t0=0, t1=5), base - k * 10**9)


def test_not_a_span_and_odd_members():
    pair = Pair()

    class FakeSpan:
        name = "fake"
        kind = "internal"
        attributes: dict[str, Any] = {"a": 1}  # noqa: RUF012
        _t0 = T0
        _t1 = T0 + 1
        _status = None
        _events = None
        _tid = 5
        _sid = 6
        _pid = 0

    for obj in (FakeSpan(), None, 5, "span"):
        pair.check(obj)
    for span in (
        make_span(name=None),
        make_span(name=5),
        make_span(name=Text("sub")),
        make_span(kind=None),
        make_span(kind=Text("server")),
        make_span(attrs=[("a", 1)]),
        make_span(attrs="a"),
    ):
        pair.check(span)
        assert not c_handles(span)

    no_attrs = make_span()
    no_attrs.attributes = None
    pair.check(no_attrs)
    assert not c_handles(no_attrs)

    class Attrs(dict):
        pass

    span = make_span(attrs=Attrs(a=1))
    pair.check(span)
    assert not c_handles(span)


def test_a_subclass_of_spanbase():
    class MySpan(SpanBase):
        pass

    pair = Pair()
    span = MySpan("sub", {"a": "b"}, "client", None)
    span._t1 = span._t0 + 5
    pair.check(span, OFFSET)
    assert c_handles(span)


def test_the_real_span_class():
    span = _span.Span("real", {"a": 1.5}, "server", None) if issubclass(_span.Span, SpanBase) else None
    if span is None:
        pytest.skip("infratrace.Span is the pure-Python span")
    span._t1 = span._t0 + 3
    Pair().check(span, _span._clock_offset_ns)


# -- random spans -------------------------------------------------------------------
ALPHABET = "abcxyz /{}:._-0123456789ABC" + '"\\' + "".join(chr(c) for c in range(0x20)) + "\x7f\x80é日😀\u2028\ufeff\U0010ffff"


def random_text(rng: random.Random, surrogates: bool) -> str:
    n = rng.choice((0, 1, 3, 8, 20, 60))
    text = "".join(rng.choice(ALPHABET) for _ in range(n))
    if surrogates and rng.random() < 0.02:
        text += chr(rng.randint(0xD800, 0xDFFF))
    return text


def random_float(rng: random.Random) -> float:
    r = rng.random()
    if r < 0.05:
        return rng.choice(PY_FLOATS + C_FLOATS)
    if r < 0.3:
        return round(rng.uniform(-1e6, 1e6), rng.randint(0, 9))
    return rng.random() * 10 ** rng.uniform(-7, 18) * rng.choice((1, -1))


def random_value(rng: random.Random) -> Any:
    r = rng.random()
    if r < 0.35:
        return random_text(rng, True)
    if r < 0.55:
        return rng.choice((rng.randint(-1000, 100_000), rng.randint(INT64_MIN, INT64_MAX), rng.getrandbits(64)))
    if r < 0.7:
        return random_float(rng)
    if r < 0.8:
        return rng.choice((True, False, None))
    if r < 0.83:
        return rng.randint(2**63, 2**70) * rng.choice((1, -1))
    if r < 0.86:
        return rng.choice(({"n": 1}, [1, "a"], (2,), Color(4), Text("t"), b"x"))
    return "v" + str(rng.randint(0, 50))


def random_span(rng: random.Random) -> Any:
    attrs: dict[Any, Any] = {}
    for _ in range(rng.choice((0, 1, 2, 3, 5, 12))):
        attrs[rng.choice(("user.id", "route", "weight", "k", random_text(rng, True)))] = random_value(rng)
    if rng.random() < 0.4:
        attrs["service"] = rng.choice(("api", "", None, "sérvice", random_text(rng, True), 0, 7))
    if rng.random() < 0.4:
        attrs["target"] = rng.choice(("/users/{id}", "", None, random_text(rng, True), 3))
    if rng.random() < 0.01:
        attrs[5] = "non-str key"
    status = None
    if rng.random() < 0.3:
        status = (
            rng.choice(("error", "unset", "ok", 'e"rr')),
            rng.choice((0, 1, 500, -3, True, 2**65)),
            rng.choice(("", "boom", random_text(rng, True), None)),
        )
    events = None
    if rng.random() < 0.1:
        events = rng.choice(([], [("e", 1, {})]))
    t0 = rng.randint(1, 10**14)
    t1 = t0 + rng.choice((0, 1, rng.randint(0, 10**10), rng.randint(0, 10**13)))
    return make_span(
        name=rng.choice(("GET /users/{id}", "db.query", random_text(rng, True))),
        attrs=attrs,
        kind=rng.choice(("internal", "server", "client", "producer", "consumer", "k\u00e9", 'k"')),
        t0=t0,
        t1=t1,
        status=status,
        events=events,
        tid=rng.getrandbits(128) or 1,
        sid=rng.getrandbits(64) or 1,
        pid=rng.choice((0, rng.getrandbits(64))),
    )


def test_random_spans_line_by_line():
    rng = random.Random(20261127)
    pair = Pair()
    odd_pair = Pair(ODD_RESOURCE, "flag")
    handled = 0
    for i in range(4000):
        span = random_span(rng)
        off = OFFSET if i % 7 else rng.randint(10**18, 2 * 10**18)
        pair.check(span, off)
        odd_pair.check(span, off)
        handled += c_handles(span)
    assert 1000 < handled < 4000  # both paths exercised


def test_random_chunks():
    rng = random.Random(7)
    pair = Pair()
    spans = [random_span(rng) for _ in range(600)]
    for _ in range(400):
        start = rng.randint(-50, 620)
        stop = start + rng.choice((0, 1, 2, 31, 32, 33, 200, 700))
        pair.check_chunk(spans, start, stop, OFFSET)
    pair.check_chunk(spans, 0, len(spans), OFFSET)
    pair.check_chunk(tuple(spans), 3, 40, OFFSET)  # type: ignore[arg-type]


def test_chunk_buffer_reuse_across_sizes():
    rng = random.Random(11)
    pair = Pair()
    plain = [
        make_span(name=f"op{i}", attrs={"user.id": i, "route": "/r/{id}", "weight": i / 4, "service": "s"}, sid=i + 1)
        for i in range(300)
    ]
    big = make_span(attrs={"blob": "x" * 300_000, "esc": "\n" * 50_000})  # beyond the kept buffer size
    sizes = [32, 1, 300, 0, 5, 32, 2, 250, 1, 32]
    for size in sizes * 3:
        start = rng.randint(0, 300 - size)
        pair.check_chunk(plain, start, start + size)
        if rng.random() < 0.3:
            pair.check_chunk([*plain[:3], big, *plain[3:6]], 0, 7)
            pair.check(big)
    assert pair.c.chunk(plain, 0, 0, OFFSET) == b"\n"  # as "\n".join([]) + "\n"


# -- errors and odd callers ---------------------------------------------------------
class Boom(Exception):
    pass


def test_a_fallback_exception_propagates_and_leaves_no_broken_state():
    py = StableJSONLine(RESOURCE)
    fail = {"on": True}

    def fallback(span: Any) -> str:
        if fail["on"] and span.name == "bad":
            raise Boom("fallback failed")
        return py(span)

    c = StableLines(py._tail, py._service, fallback)
    good = make_span(name="good", attrs={"a": 1})
    bad = make_span(name="bad", attrs={"nested": {"x": 1}})
    with pytest.raises(Boom):
        c.line(bad, OFFSET)
    with pytest.raises(Boom):
        c.chunk([good, good, bad, good], 0, 4, OFFSET)
    saved = _span._clock_offset_ns
    _span._clock_offset_ns = OFFSET
    try:
        assert c.line(good, OFFSET) == py(good)
        assert c.chunk([good, good], 0, 2, OFFSET) == (py(good) + "\n" + py(good) + "\n").encode()
        fail["on"] = False
        assert c.chunk([good, bad, good], 0, 3, OFFSET) == ("\n".join([py(good), py(bad), py(good)]) + "\n").encode()
    finally:
        _span._clock_offset_ns = saved


def test_a_fallback_returning_a_non_str_is_a_type_error():
    c = StableLines("", '"s"', lambda span: 42)
    with pytest.raises(TypeError):
        c.line(object(), OFFSET)
    with pytest.raises(TypeError):
        c.chunk([object()], 0, 1, OFFSET)


def test_a_fallback_line_with_lone_surrogates_is_replaced_in_chunks():
    c = StableLines("", '"s"', lambda span: "a\ud800b\udfffc")
    assert c.line(object(), 0) == "a\ud800b\udfffc"
    assert c.chunk([object(), object()], 0, 2, 0) == ("a\ud800b\udfffc\n" * 2).encode("utf-8", "replace")


def test_a_reentrant_fallback():
    py = StableJSONLine(RESOURCE)
    holder: dict[str, Any] = {}
    good = make_span(name="good", attrs={"a": "ü"})

    def fallback(span: Any) -> str:
        inner = holder["c"].chunk([good] * 40, 0, 40, OFFSET)  # uses the encoder while it is busy
        assert inner == ((py(good) + "\n") * 40).encode()
        return py(span)

    c = holder["c"] = StableLines(py._tail, py._service, fallback)
    bad = make_span(name="bad", events=[("e", 1, {})])
    saved = _span._clock_offset_ns
    _span._clock_offset_ns = OFFSET
    try:
        want = ("\n".join([py(good), py(bad), py(good)]) + "\n").encode()
        assert c.chunk([good, bad, good], 0, 3, OFFSET) == want
        assert c.line(bad, OFFSET) == py(bad)
    finally:
        _span._clock_offset_ns = saved


def test_a_fallback_that_changes_the_list():
    py = StableJSONLine(RESOURCE)
    spans: list[Any] = []

    def fallback(span: Any) -> str:
        spans.clear()
        gc.collect()
        return py(span)

    c = StableLines(py._tail, py._service, fallback)
    spans.extend([make_span(name="bad", attrs={"n": [1]}), make_span(name="after")])
    saved = _span._clock_offset_ns
    _span._clock_offset_ns = OFFSET
    try:
        lines = [py(s) for s in spans]
        assert c.chunk(spans, 0, 2, OFFSET) == ("\n".join(lines) + "\n").encode()
    finally:
        _span._clock_offset_ns = saved


def test_bad_arguments():
    with pytest.raises(TypeError):
        StableLines("", '"s"', "not callable")
    with pytest.raises(TypeError):
        StableLines(1, '"s"', print)
    with pytest.raises(TypeError):
        StableLines("", None, print)
    with pytest.raises(UnicodeEncodeError):
        StableLines("\ud800", '"s"', print)
    c = StableLines("", '"s"', lambda s: "x")
    with pytest.raises(TypeError):
        c.line(make_span())
    with pytest.raises(TypeError):
        c.line(make_span(), "0")
    with pytest.raises(TypeError):
        c.chunk([make_span()], 0, 1)
    with pytest.raises(TypeError):
        c.chunk([make_span()], "0", 1, 0)
    with pytest.raises(TypeError):
        c.chunk(5, 0, 1, 0)
    assert c.chunk([make_span(attrs={"a": [1]})], 0, 1, 0) == b"x\n"


def test_the_encoder_holds_its_fallback_for_the_gc():
    py = StableJSONLine(RESOURCE)

    class Holder:
        c: Any = None

    holder = Holder()
    holder.c = StableLines(py._tail, py._service, lambda span, h=holder: py(span))
    ref = weakref.ref(holder)
    del holder
    gc.collect()  # the cycle holder -> encoder -> fallback -> holder is found
    assert ref() is None


# -- the wiring: stable_line_encoder and the pure-Python switch -----------------------
def test_stable_line_encoder_uses_c_unless_pure_python(monkeypatch):
    monkeypatch.delenv("INFRATRACE_PURE_PYTHON", raising=False)
    assert isinstance(_fields.stable_line_encoder(RESOURCE), _fields.CStableLines)
    monkeypatch.setenv("INFRATRACE_PURE_PYTHON", "0")
    assert isinstance(_fields.stable_line_encoder(RESOURCE), _fields.CStableLines)
    monkeypatch.setenv("INFRATRACE_PURE_PYTHON", "1")
    assert isinstance(_fields.stable_line_encoder(RESOURCE), _fields.PyStableLines)


def test_both_encoders_give_the_same_lines(monkeypatch):
    rng = random.Random(3)
    spans = [random_span(rng) for _ in range(300)]
    monkeypatch.setattr(_span, "_clock_offset_ns", OFFSET)
    monkeypatch.delenv("INFRATRACE_PURE_PYTHON", raising=False)
    fast = _fields.stable_line_encoder(RESOURCE, "f")
    monkeypatch.setenv("INFRATRACE_PURE_PYTHON", "1")
    slow = _fields.stable_line_encoder(RESOURCE, "f")
    for span in spans:
        try:
            want = slow.line(span)
        except Exception as exc:
            with pytest.raises(type(exc)):
                fast.line(span)
            continue
        assert fast.line(span) == want
    safe = []
    for span in spans:
        try:
            slow.line(span)
        except Exception:
            continue
        safe.append(span)
    for start in range(0, len(safe), 32):
        assert fast.chunk(safe, start, start + 32) == slow.chunk(safe, start, start + 32)


def test_strings_reused_across_spans_are_written_alike_from_the_cache():
    # The C encoder keeps the JSON text of recent str objects (keys and values repeat
    # span after span). The same objects, seen first as escaped values and then where
    # the Python code writes raw text (kind, status), must still give the same lines;
    # so must a long string, a non-ASCII one and one the cache has to evict.
    pair = Pair()
    quoted = 'a"b\\c\n'
    plain = "server"
    long_text = "x" * 200
    accented = "café"
    strings = [quoted, plain, long_text, accented, *(f"value-{i}" for i in range(2000))]
    spans = []
    for round_ in range(3):
        for i, text in enumerate(strings[:40] if round_ else strings):
            attrs = {text: text, "plain": plain, "quoted": quoted, "n": i}
            spans.append(make_span(name=text, attrs=attrs, kind=plain, status=(plain, i, text)))
        spans.append(make_span(kind=quoted, status=(quoted, 1, quoted)))  # raw text with an escape: fallback
        spans.append(make_span(kind=plain, status=(quoted, 1, "")))
    for span in spans:
        pair.check(span)
    pair.check_chunk(spans, 0, len(spans))
    assert not c_handles(make_span(kind=quoted))
    assert c_handles(make_span(kind=plain, attrs={"k": quoted}))


def test_the_string_cache_holds_its_strs_only_while_the_encoder_lives():
    c = StableLines(Pair().py._tail, Pair().py._service, StableJSONLine(RESOURCE))
    text = "".join(["transient-", "value"])  # a fresh str object
    before = sys.getrefcount(text)
    c.line(make_span(attrs={"k": text}), OFFSET)
    assert sys.getrefcount(text) == before + 1  # the cache's reference
    del c
    gc.collect()
    assert sys.getrefcount(text) == before


class Key(str):
    pass


@pytest.mark.parametrize(
    "attrs",
    [
        {"service": "api", "target": "/t", 5: "int key"},
        {"service": "api", Key("sub"): "str-subclass key"},
        {"a": 1, "b": [1, 2], "service": "late"},  # a value the C code does not write, after others
        {"service": ["not", "a", "str"], "target": "/t"},
        {"target": 7, "x": 1},
        {"service": None, "target": None, "z": "last"},
        {"service": "", "target": ""},
    ],
)
def test_lines_that_turn_out_not_simple_halfway_go_to_the_fallback_whole(attrs):
    pair = Pair()
    pair.check(make_span(attrs=attrs))
    pair.check_chunk([make_span(attrs={"ok": 1}), make_span(attrs=attrs), make_span(attrs={"ok": 2})], 0, 3)
