"""Flask test helpers: a traced app per test, spans read back from the file driver."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from infratrace_flask import InfraTrace

from ..conftest import SpanFile


class Trace:
    """The spans of one test, looked up by name."""

    def __init__(self, spans: list[dict[str, Any]]) -> None:
        self.spans = spans

    def names(self) -> list[str]:
        return [span["name"] for span in self.spans]

    def one(self, name: str) -> dict[str, Any]:
        found = [span for span in self.spans if span["name"] == name]
        assert len(found) == 1, f"expected one {name!r} span, got {len(found)} in {self.names()}"
        return found[0]

    def children(self, parent: dict[str, Any]) -> list[dict[str, Any]]:
        return [span for span in self.spans if span["parent_span_id"] == parent["span_id"]]


@pytest.fixture
def spans(span_file: Callable[..., SpanFile]) -> Callable[[], Trace]:
    """``spans()`` flushes and returns everything written so far."""
    file = span_file()
    return lambda: Trace(file.spans())


@pytest.fixture
def make_app() -> Iterator[Callable[..., Flask]]:
    def make(**options: Any) -> Flask:
        app = Flask("tests.flask.app")
        InfraTrace(app, **options)
        return app

    yield make
