"""Shared fixtures: a file connection whose JSON lines the test can read back."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import infratrace


class SpanFile:
    """Configure infratrace to write JSON lines to a temp file; ``spans()`` flushes and
    returns them as dicts."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def spans(self) -> list[dict[str, Any]]:
        assert infratrace.force_flush(10), "force_flush timed out"
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]

    def by_name(self) -> dict[str, dict[str, Any]]:
        return {span["name"]: span for span in self.spans()}


@pytest.fixture
def span_file(tmp_path: Path) -> Iterator[Callable[..., SpanFile]]:
    def make(extra: str = "", *, connection: str = "", **setting: Any) -> SpanFile:
        path = tmp_path / "spans.jsonl"
        table = f"trace.{connection}" if connection else "trace"
        options = "".join(f"{key} = {json.dumps(value)}\n" for key, value in setting.items())
        infratrace.configure(f'[{table}]\ndriver = "file"\njson = true\n{extra}\n[{table}.setting]\noutput = "{path}"\n{options}')
        return SpanFile(path)

    yield make
    infratrace.shutdown(5)


@pytest.fixture(autouse=True)
def _fresh_tracer() -> Iterator[None]:
    yield
    infratrace.set_hook(None)
    # What a configuration from the environment switched (OTEL_PROPAGATORS,
    # OTEL_SDK_DISABLED) is process-wide: back to the defaults for the next test.
    from infratrace._propagation import PROPAGATORS, set_propagators
    from infratrace._tracer import _tracer

    set_propagators(PROPAGATORS)
    _tracer._off = False


@pytest.fixture(autouse=True)
def _no_context_leaks() -> Iterator[None]:
    """No test may leave a current span or a span budget behind in the test's thread:
    under WSGI the next request on a thread runs in the same context, so a leak there
    would parent or refuse the next request's spans."""
    from infratrace._budget import active_budget
    from infratrace._span import current_span  # the built-in context, whatever hook a test installed

    yield
    assert active_budget() is None, f"a span budget leaked: {active_budget()!r}"
    assert current_span() is None, f"a current span leaked: {current_span()!r}"
    assert not infratrace.baggage.get_all(), f"baggage leaked: {infratrace.baggage.get_all()!r}"
