"""``infratrace_sqlalchemy`` on real sync engines (SQLite in a file, PostgreSQL through
psycopg 3): span names, attributes, parents, sanitizing, errors, batches, the span
budget, one engine or every engine, and removing the listeners."""

from __future__ import annotations

from typing import Any

import infratrace_sqlalchemy
import pytest
from sqlalchemy import Engine, create_engine, event, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import infratrace
from infratrace import ConfigError
from tests.conftest import SpanFile

from .conftest import RUN, accounts, metadata, needs_postgres, pg_engine

LITERAL_SECRET = f"hunter2-{RUN}"
PARAM_SECRET = f"param-secret-{RUN}"


def names(spans: list[dict[str, Any]], prefix: str = "db:") -> list[str]:
    return [span["name"] for span in spans if span["name"].startswith(prefix)]


def system_of(engine: Engine) -> str:
    return "postgresql" if engine.dialect.name == "postgresql" else "sqlite"


def test_statements_are_client_children_of_the_current_span(engine: Engine, spans_of: SpanFile) -> None:
    infratrace_sqlalchemy.instrument(engine)
    with infratrace.begin("service:signup") as parent, engine.begin() as conn:
        conn.execute(insert(accounts), {"email": "a@example.com", "password": PARAM_SECRET})
        rows = conn.execute(select(accounts.c.id).where(accounts.c.email == "a@example.com")).all()
        conn.execute(text(f"SELECT count(*) FROM accounts WHERE password = '{LITERAL_SECRET}' AND id > 10"))
    assert len(rows) == 1
    spans = spans_of.spans()
    queries = [span for span in spans if span["name"].startswith("db:")]
    assert names(spans) == ["db:INSERT accounts", "db:SELECT accounts", "db:SELECT accounts"]
    for span in queries:
        assert span["kind"] == "client" and span["status"] == "ok"
        assert span["parent_span_id"] == parent.span_id and span["trace_id"] == parent.trace_id
        attrs = span["attributes"]
        assert attrs["db.system"] == system_of(engine) and attrs["module"] == "sqlalchemy"
        assert attrs["db.collection.name"] == "accounts" and span["target"] == "accounts"
    insert_text = queries[0]["attributes"]["db.query.text"]
    placeholder = "%(email)s" if system_of(engine) == "postgresql" else "?"
    assert insert_text.startswith(f"INSERT INTO accounts (email, password) VALUES ({placeholder}")
    assert queries[2]["attributes"]["db.query.text"] == "SELECT count(*) FROM accounts WHERE password = ? AND id > ?"
    written = spans_of.path.read_text()
    assert LITERAL_SECRET not in written and PARAM_SECRET not in written


def test_database_attributes(engine: Engine, spans_of: SpanFile) -> None:
    infratrace_sqlalchemy.instrument(engine, service="accounts-api")
    with infratrace.begin("service:x"), engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    (query,) = [span for span in spans_of.spans() if span["name"].startswith("db:")]
    attrs = query["attributes"]
    assert query["name"] == "db:SELECT" and attrs["db.operation.name"] == "SELECT" and "db.collection.name" not in attrs
    assert attrs["service"] == "accounts-api" and query["service_name"] == "accounts-api"
    if system_of(engine) == "postgresql":
        assert attrs["db.namespace"] == "test"
        assert attrs["server.address"] == "127.0.0.1" and attrs["server.port"] == 5432
    else:
        assert attrs["db.namespace"].endswith("test.sqlite3") and "server.address" not in attrs


def test_no_current_span_no_span_unless_root_spans(engine: Engine, spans_of: SpanFile) -> None:
    infratrace_sqlalchemy.instrument(engine)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert spans_of.spans() == []
    infratrace_sqlalchemy.instrument(engine, root_spans=True)  # replaces the options
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    (root,) = spans_of.spans()
    assert root["name"] == "db:SELECT" and root["parent_span_id"] == ""


def test_a_failing_statement_is_an_error_span_and_the_exception_is_unchanged(engine: Engine, spans_of: SpanFile) -> None:
    def duplicate() -> tuple[str, str, str]:
        with engine.begin() as conn:
            conn.execute(insert(accounts), {"email": "dup@example.com", "password": "x"})
        try:
            with engine.begin() as conn:
                conn.execute(insert(accounts), {"email": "dup@example.com", "password": "x"})
        except IntegrityError as exc:
            with engine.begin() as conn:
                conn.execute(accounts.delete())
            return type(exc).__qualname__, type(exc.orig).__qualname__, str(exc)
        raise AssertionError("no IntegrityError")

    untraced = duplicate()
    infratrace_sqlalchemy.instrument(engine)
    with infratrace.begin("service:signup"):
        traced = duplicate()
    assert traced == untraced  # same exception, same driver exception, same message
    spans = spans_of.spans()
    inserts = [span for span in spans if span["name"] == "db:INSERT accounts"]
    assert [span["status"] for span in inserts] == ["ok", "error"]
    failed = inserts[1]["attributes"]
    assert failed["error.type"] == "IntegrityError"
    assert failed["db.response.status_code"] == ("23505" if system_of(engine) == "postgresql" else "SQLITE_CONSTRAINT_UNIQUE")
    message = inserts[1]["status_message"]
    assert message.startswith("IntegrityError: (") and "\n" not in message
    assert "dup@example.com" not in spans_of.path.read_text()  # PostgreSQL's DETAIL line quotes it
    assert names(spans)[-1] == "db:DELETE accounts"


def test_executemany_is_one_span_with_the_batch_size(engine: Engine, spans_of: SpanFile) -> None:
    infratrace_sqlalchemy.instrument(engine)
    rows = [{"email": f"{number}@example.com", "password": PARAM_SECRET} for number in range(4)]
    with infratrace.begin("service:import"), engine.begin() as conn:
        conn.execute(insert(accounts), rows)
    (batch,) = [span for span in spans_of.spans() if span["name"].startswith("db:")]
    assert batch["name"] == "db:INSERT accounts"
    assert batch["attributes"]["db.operation.batch.size"] == 4
    assert PARAM_SECRET not in spans_of.path.read_text()


def test_orm_session(engine: Engine, spans_of: SpanFile) -> None:
    infratrace_sqlalchemy.instrument(engine)
    with infratrace.begin("service:orm"), Session(engine) as session:
        session.execute(insert(accounts).values(email="orm@example.com", password="x"))
        session.commit()
        assert session.scalars(select(accounts.c.email)).all() == ["orm@example.com"]
    assert names(spans_of.spans()) == ["db:INSERT accounts", "db:SELECT accounts"]


def test_five_hundred_statements_stay_within_the_span_budget(engine: Engine, spans_of: SpanFile) -> None:
    infratrace_sqlalchemy.instrument(engine)
    with infratrace.begin("service:loop"), infratrace.span_budget(100) as budget, engine.connect() as conn:
        for number in range(500):
            conn.execute(text("SELECT :n"), {"n": number})
    assert budget.used == 100 and budget.dropped == 400
    assert len(names(spans_of.spans())) == 100


def test_every_engine_including_engines_made_later(spans_of: SpanFile, tmp_path: Any) -> None:
    infratrace_sqlalchemy.instrument()
    assert infratrace_sqlalchemy.instrumented()
    later = create_engine("sqlite://")
    assert infratrace_sqlalchemy.instrumented(later)
    with infratrace.begin("service:x"):
        with later.connect() as conn:
            conn.execute(text("SELECT 1"))
        with later.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:  # a copy of the engine
            conn.execute(text("SELECT 2"))
    assert names(spans_of.spans()) == ["db:SELECT", "db:SELECT"]
    infratrace_sqlalchemy.uninstrument()
    assert not infratrace_sqlalchemy.instrumented() and not infratrace_sqlalchemy.instrumented(later)
    with infratrace.begin("service:y"), later.connect() as conn:
        conn.execute(text("SELECT 3"))
    assert len(names(spans_of.spans())) == 2


def test_an_engine_of_its_own_keeps_its_options_and_is_traced_once(spans_of: SpanFile) -> None:
    own = create_engine("sqlite://")
    other = create_engine("sqlite://")
    infratrace_sqlalchemy.instrument(service="everyone")
    infratrace_sqlalchemy.instrument(own, service="own")
    with infratrace.begin("service:x"):
        for made in (own, other):
            with made.connect() as conn:
                conn.execute(text("SELECT 1"))
    services = [span["attributes"]["service"] for span in spans_of.spans() if span["name"].startswith("db:")]
    assert services == ["own", "everyone"]
    infratrace_sqlalchemy.uninstrument(own)  # every engine's listeners trace it again
    with infratrace.begin("service:y"), own.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert [span["attributes"]["service"] for span in spans_of.spans() if span["name"].startswith("db:")][-1] == "everyone"


def test_uninstrument_one_engine(engine: Engine, spans_of: SpanFile) -> None:
    infratrace_sqlalchemy.instrument(engine)
    infratrace_sqlalchemy.instrument(engine)  # again: still one span per statement
    with infratrace.begin("service:x"), engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    infratrace_sqlalchemy.uninstrument(engine)
    assert not infratrace_sqlalchemy.instrumented(engine)
    assert not event.contains(engine, "before_cursor_execute", infratrace_sqlalchemy._listeners._Listeners.before)
    with infratrace.begin("service:y"), engine.connect() as conn:
        conn.execute(text("SELECT 2"))
    assert names(spans_of.spans()) == ["db:SELECT"]


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"root_spans": "yes"}, "root_spans"), ({"service": 42}, "service"), ({"engine": "sqlite://"}, "engine")],
)
def test_bad_arguments_are_config_errors(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=f"^{key} = .* is invalid: expected"):
        infratrace_sqlalchemy.instrument(**kwargs)
    assert not infratrace_sqlalchemy.instrumented()


def test_a_failing_tracer_never_breaks_a_statement(engine: Engine) -> None:
    class Hook:
        def begin(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("broken")

        start_span = trace = begin

        def current_span(self) -> Any:
            return object()  # a parent that is no span

        def configure(self, config: Any) -> None:
            pass

        def stats(self) -> dict[str, Any]:
            return {}

        def force_flush(self, timeout: float | None = None) -> bool:
            return True

        def shutdown(self, timeout: float | None = None) -> bool:
            return True

    infratrace_sqlalchemy.instrument(engine, root_spans=True)
    infratrace.set_hook(Hook())
    with engine.begin() as conn:
        conn.execute(insert(accounts), {"email": "ok@example.com", "password": "x"})
        assert conn.execute(select(accounts.c.email)).scalar_one() == "ok@example.com"
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(accounts), {"email": "ok@example.com", "password": "x"})


@needs_postgres
def test_savepoints_and_transactions_on_postgresql(postgres_schema: str, spans_of: SpanFile) -> None:
    made = pg_engine()
    metadata.create_all(made)
    try:
        infratrace_sqlalchemy.instrument(made)
        with infratrace.begin("service:tx"), made.begin() as conn:
            with conn.begin_nested():
                conn.execute(insert(accounts), {"email": "sp@example.com", "password": "x"})
            nested = conn.begin_nested()
            conn.execute(text("SELECT 1"))
            nested.rollback()
        assert names(spans_of.spans()) == [
            "db:SAVEPOINT",
            "db:INSERT accounts",
            "db:RELEASE SAVEPOINT",
            "db:SAVEPOINT",
            "db:SELECT",
            "db:ROLLBACK TO SAVEPOINT",
        ]
    finally:
        infratrace_sqlalchemy.uninstrument()
        metadata.drop_all(made)
        made.dispose()
