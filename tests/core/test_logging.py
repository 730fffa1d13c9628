"""Trace ids in log records: the stdlib record factory and the structlog processor."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog

import infratrace
import infratrace.logging as it_logging


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s|%(trace_id)s|%(span_id)s|%(trace_sampled)s"))
    logger = logging.getLogger("test.infratrace.logging")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    it_logging.instrument()
    yield stream
    it_logging.uninstrument()
    logger.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[list[str]]:
    return [line.split("|") for line in stream.getvalue().splitlines()]


def test_records_inside_and_outside_spans(captured, span_file):
    spans = span_file()
    logger = logging.getLogger("test.infratrace.logging")
    logger.info("before")
    with infratrace.begin("http:GET /") as outer:
        logger.info("outer")
        with infratrace.begin("service:x") as inner:
            logger.warning("inner %s", 1)
    logger.info("after")
    assert _lines(captured) == [
        ["before", "", "", "False"],
        ["outer", outer.trace_id, outer.span_id, "True"],
        ["inner 1", inner.trace_id, inner.span_id, "True"],
        ["after", "", "", "False"],
    ]
    assert {s["name"] for s in spans.spans()} == {"http:GET /", "service:x"}


def test_an_unsampled_trace_says_so(captured):
    infratrace.configure({"trace": {"driver": "discard", "sample": {"rate": 0, "error": False}}})
    remote = infratrace.parse_traceparent("00-" + "a" * 32 + "-" + "b" * 16 + "-00")
    with infratrace.begin("http:GET /", parent=remote):
        logging.getLogger("test.infratrace.logging").info("x")
    assert _lines(captured) == [["x", "a" * 32, _lines(captured)[0][2], "False"]]


def test_exception_events_are_optional_and_leave_the_status(captured, span_file):
    spans = span_file()
    logger = logging.getLogger("test.infratrace.logging")
    with infratrace.begin("plain"):
        try:
            raise KeyError("k")
        except KeyError:
            logger.exception("handled without events")
    it_logging.instrument(exception_events=True)
    with infratrace.begin("with-events"):
        try:
            raise ValueError("bad value")
        except ValueError:
            logger.exception("lookup of %s failed", "user")
        logger.error("no exception info here")
    by_name = {s["name"]: s for s in spans.spans()}
    assert "events" not in by_name["plain"]
    span = by_name["with-events"]
    assert span["status"] == "ok"  # a logged exception may have been handled
    (event,) = span["events"]
    assert event["name"] == "exception"
    attrs = event["attributes"]
    assert attrs["exception.type"] == "ValueError"
    assert attrs["exception.message"] == "bad value"
    assert attrs["log.message"] == "lookup of user failed"
    assert attrs["log.logger"] == "test.infratrace.logging"
    assert "Traceback" in attrs["exception.stacktrace"]


def test_uninstrument_restores_the_previous_factory_or_steps_aside():
    original = logging.getLogRecordFactory()
    it_logging.instrument()
    it_logging.instrument()  # twice: one wrapper
    assert logging.getLogRecordFactory() is not original
    it_logging.uninstrument()
    assert logging.getLogRecordFactory() is original
    assert not it_logging.is_instrumented()

    it_logging.instrument()
    ours = logging.getLogRecordFactory()

    def theirs(*args, **kwargs):  # another library wraps ours
        record = ours(*args, **kwargs)
        record.theirs = True
        return record

    logging.setLogRecordFactory(theirs)
    try:
        it_logging.uninstrument()
        assert logging.getLogRecordFactory() is theirs
        with infratrace.begin("x"):
            record = logging.getLogRecordFactory()("n", logging.INFO, "f", 1, "m", (), None)
        assert record.theirs is True
        assert not hasattr(record, "trace_id")
    finally:
        logging.setLogRecordFactory(original)


def test_a_broken_span_never_breaks_logging(captured):
    class Weird:
        _tid = "not a number"
        _sid = 1
        flags = 1

    from infratrace.instrumentation import attach, detach

    token = attach(Weird())  # type: ignore[arg-type]
    try:
        logging.getLogger("test.infratrace.logging").info("still logged")
    finally:
        detach(token)
    assert captured.getvalue().startswith("still logged")


def test_structlog_processor_adds_the_ids_inside_spans():
    output: list[dict[str, object]] = []

    def keep(logger, method_name, event_dict):
        output.append(dict(event_dict))
        raise structlog.DropEvent

    structlog.configure(processors=[it_logging.structlog_processor, keep])
    try:
        log = structlog.get_logger()
        log.info("outside")
        with infratrace.begin("x") as span:
            log.info("inside")
            log.info("explicit", trace_id="mine")
    finally:
        structlog.reset_defaults()
    assert output[0] == {"event": "outside"}
    assert output[1] == {"event": "inside", "trace_id": span.trace_id, "span_id": span.span_id, "trace_sampled": True}
    assert output[2]["trace_id"] == "mine"
