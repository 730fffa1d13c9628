"""Flask test helpers: a traced app per test, spans read back from the file driver."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
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


class ClosingClient(FlaskClient):
    """Reads and closes every response unless a test asks for ``buffered=False``.

    A WSGI server always closes the body, which is when the ``http:`` span ends; the
    test client leaves an unread response to the garbage collector, whose timing
    would make a test that only looks at ``status_code`` depend on the tests before it."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


@pytest.fixture
def make_app() -> Iterator[Callable[..., Flask]]:
    def make(**options: Any) -> Flask:
        app = Flask("tests.flask.app")
        app.test_client_class = ClosingClient
        InfraTrace(app, **options)
        return app

    yield make
