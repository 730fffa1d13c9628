"""Engines for the SQLAlchemy tests: SQLite (in a temp file) and PostgreSQL at
127.0.0.1:5432 (database ``test``, user ``postgres``), each test run in a schema of its
own so parallel runs never share tables; the PostgreSQL tests are skipped when it is
unreachable. Every test ends with every listener removed."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import infratrace_sqlalchemy
import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, create_engine, text

from tests.conftest import SpanFile
from tests.servers import postgres_up

RUN = uuid.uuid4().hex[:12]
SCHEMA = f"infratrace_test_{RUN}"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

metadata = MetaData()
accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(200), unique=True, nullable=False),
    Column("password", String(200), nullable=False),
)


PG_UP = postgres_up()
needs_postgres = pytest.mark.skipif(not PG_UP, reason="PostgreSQL is not reachable at 127.0.0.1:5432")


def pg_engine(**kwargs: object) -> Engine:
    """An engine whose connections use this run's schema."""
    return create_engine(PG_URL, connect_args={"options": f"-c search_path={SCHEMA}"}, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def postgres_schema() -> Iterator[str]:
    if not PG_UP:
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{SCHEMA}"'))
    yield SCHEMA
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{SCHEMA}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=needs_postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh engine with an empty ``accounts`` table, on each database."""
    if request.param == "sqlite":
        made = create_engine(f"sqlite:///{tmp_path / 'test.sqlite3'}")
    else:
        request.getfixturevalue("postgres_schema")
        made = pg_engine()
    metadata.create_all(made)  # before any instrument(): not traced
    yield made
    infratrace_sqlalchemy.uninstrument()
    metadata.drop_all(made)
    made.dispose()


@pytest.fixture(autouse=True)
def _no_listeners_left() -> Iterator[None]:
    yield
    infratrace_sqlalchemy.uninstrument()


@pytest.fixture
def spans_of(span_file: Callable[..., SpanFile]) -> SpanFile:
    return span_file()
