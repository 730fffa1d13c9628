"""Fixtures for the ASGI adapter tests: a traced test app and its spans."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2 for its TestClient
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from .app import build_app


@pytest.fixture
def client_for(span_file: Callable[..., Any]) -> Iterator[Callable[..., TestClient]]:
    """``client_for(**options)``: a TestClient (lifespan running) for the test app with
    ``TraceMiddleware(**options)``; spans go to the ``span_file`` fixture's file."""
    clients: list[TestClient] = []

    def make(*, raise_server_exceptions: bool = True, **options: Any) -> TestClient:
        client = TestClient(build_app(**options), raise_server_exceptions=raise_server_exceptions)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
