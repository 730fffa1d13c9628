"""@service / @method / @trigger / @traced on sync, async, generator and async
generator functions."""

from __future__ import annotations

import asyncio

import pytest

import infratrace


@infratrace.method("user.hash")
def hash_pw(raw: str) -> str:
    return raw[::-1]


@infratrace.service("user.login")
def login(name: str, password: str) -> str:
    return hash_pw(password)


@infratrace.service("user.alogin")
async def alogin(password: str) -> str:
    await asyncio.sleep(0)
    return hash_pw(password)


@infratrace.method
def bare() -> int:
    return 1


@infratrace.method("gen.items")
def items(n: int):
    for i in range(n):
        infratrace.trace(f"item{i}")
        yield i


@infratrace.method("agen.items")
async def aitems(n: int):
    for i in range(n):
        await asyncio.sleep(0)
        infratrace.trace(f"aitem{i}")
        yield i


def test_service_calls_method_as_children_of_the_current_span(span_file):
    out = span_file()
    with infratrace.begin("web:view") as view:
        assert login("ann", "secret") == "terces"
    spans = out.by_name()
    svc, meth = spans["service:user.login"], spans["method:user.hash"]
    assert svc["parent_span_id"] == view.span_id and meth["parent_span_id"] == svc["span_id"]
    assert svc["attributes"] == {"kind": "service", "target": "user.login", "module": __name__, "operation": "login"}
    assert "code.arg.password" not in meth["attributes"]


def test_async_function(span_file):
    out = span_file()
    assert asyncio.run(alogin("ab")) == "ba"
    spans = out.by_name()
    assert spans["method:user.hash"]["parent_span_id"] == spans["service:user.alogin"]["span_id"]


def test_bare_decorator_uses_the_qualified_name(span_file):
    out = span_file()
    bare()
    assert out.spans()[0]["name"] == f"method:{__name__}.bare"


def test_exception_marks_error_and_reraises_unchanged(span_file):
    out = span_file()

    class Boom(Exception):
        pass

    @infratrace.trigger("startup")
    def start() -> None:
        raise Boom("no")

    with pytest.raises(Boom) as info:
        start()
    assert str(info.value) == "no"
    (span,) = out.spans()
    assert span["name"] == "trigger:startup" and span["status"] == "error"
    assert span["attributes"]["kind"] == "trigger"


def test_generator_span_covers_iteration_but_is_current_only_inside(span_file):
    out = span_file()
    with infratrace.begin("consumer") as consumer:
        for value in items(3):
            infratrace.trace(f"consumer-saw-{value}")
    spans = out.by_name()
    gen = spans["method:gen.items"]
    assert gen["parent_span_id"] == consumer.span_id
    for i in range(3):
        assert spans[f"item{i}"]["parent_span_id"] == gen["span_id"]
        assert spans[f"consumer-saw-{i}"]["parent_span_id"] == consumer.span_id
    assert gen["end_time_unix_nano"] >= spans["consumer-saw-2"]["end_time_unix_nano"]


def test_generator_closed_early_and_send_throw(span_file):
    out = span_file()

    @infratrace.method("echo")
    def echo():
        received = yield "ready"
        try:
            while True:
                received = yield received
        except KeyError:
            yield "caught"

    gen = echo()
    assert next(gen) == "ready"
    assert gen.send(5) == 5
    assert gen.throw(KeyError("k")) == "caught"
    gen.close()
    for value in items(10):
        if value == 1:
            break
    del value
    import gc

    gc.collect()
    spans = out.by_name()
    assert spans["method:echo"]["status"] == "ok"
    assert spans["method:gen.items"]["status"] == "ok"


def test_async_generator(span_file):
    out = span_file()

    async def main() -> list[int]:
        return [i async for i in aitems(2)]

    assert asyncio.run(main()) == [0, 1]
    spans = out.by_name()
    assert spans["aitem1"]["parent_span_id"] == spans["method:agen.items"]["span_id"]


def test_arguments_recorded_only_when_asked(span_file):
    out = span_file()

    @infratrace.service("pay", record_args=True)
    def pay(amount: int, card: object, note: str = "x" * 1000) -> None:
        pass

    pay(12, object())
    attrs = out.spans()[0]["attributes"]
    assert attrs["code.arg.amount"] == 12
    assert attrs["code.arg.card"].startswith("<object")
    assert "code.arg.note" not in attrs  # defaults are not bound by the caller


def test_traced_with_custom_name_attrs_and_kind(span_file):
    out = span_file()

    @infratrace.traced("rpc:inventory.reserve", {"peer": "inventory"}, kind="client")
    def reserve() -> None:
        pass

    reserve()
    (span,) = out.spans()
    assert span["kind"] == "client" and span["attributes"]["peer"] == "inventory"


def test_wrapped_function_keeps_its_metadata():
    assert login.__name__ == "login" and login.__wrapped__.__name__ == "login"  # type: ignore[attr-defined]
