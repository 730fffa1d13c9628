"""``infratrace_sqlalchemy`` on an AsyncEngine (``postgresql+psycopg``, psycopg 3's
async connection): statements run in greenlets on the engine's ``sync_engine``, with
the calling task's current span as their parent — also with tasks running at once."""

from __future__ import annotations

import asyncio
from typing import Any

import infratrace_sqlalchemy
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

import infratrace
from tests.conftest import SpanFile

from .conftest import PG_URL, accounts, metadata, needs_postgres

pytestmark = needs_postgres


async def with_engine(schema: str, work: Any) -> Any:
    engine = create_async_engine(PG_URL, connect_args={"options": f"-c search_path={schema}"})
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        return await work(engine)
    finally:
        infratrace_sqlalchemy.uninstrument()
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
        await engine.dispose()


def test_async_engine_statements_are_children_of_the_tasks_span(postgres_schema: str, spans_of: SpanFile) -> None:
    async def work(engine: Any) -> list[str]:
        infratrace_sqlalchemy.instrument(engine)

        async def task(number: int) -> str:
            async with infratrace.begin(f"service:task{number}"):
                async with engine.begin() as conn:
                    await conn.execute(insert(accounts), {"email": f"{number}@example.com", "password": "x"})
                    await asyncio.sleep(0.01)  # let the other tasks run in between
                    result = await conn.execute(select(accounts.c.email).where(accounts.c.email == f"{number}@example.com"))
                    return str(result.scalar_one())

        return await asyncio.gather(*(task(number) for number in range(4)))

    emails = asyncio.run(with_engine(postgres_schema, work))
    assert emails == [f"{number}@example.com" for number in range(4)]
    spans = spans_of.spans()
    tasks = {span["span_id"]: span["name"] for span in spans if span["name"].startswith("service:task")}
    queries = [span for span in spans if span["name"].startswith("db:")]
    assert len(tasks) == 4 and len(queries) == 8
    by_task: dict[str, list[str]] = {}
    for span in queries:
        assert span["parent_span_id"] in tasks and span["attributes"]["db.system"] == "postgresql"
        by_task.setdefault(tasks[span["parent_span_id"]], []).append(span["name"])
    assert all(found == ["db:INSERT accounts", "db:SELECT accounts"] for found in by_task.values())


def test_async_error_span_and_no_span_without_a_parent(postgres_schema: str, spans_of: SpanFile) -> None:
    async def work(engine: Any) -> str:
        infratrace_sqlalchemy.instrument(engine)
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))  # no current span: not traced
        async with infratrace.begin("service:dup"):
            async with engine.begin() as conn:
                await conn.execute(insert(accounts), {"email": "dup@example.com", "password": "x"})
            try:
                async with engine.begin() as conn:
                    await conn.execute(insert(accounts), {"email": "dup@example.com", "password": "x"})
            except IntegrityError as exc:
                return type(exc.orig).__name__
        return ""

    assert asyncio.run(with_engine(postgres_schema, work)) == "UniqueViolation"
    queries = [span for span in spans_of.spans() if span["name"].startswith("db:")]
    assert [(span["name"], span["status"]) for span in queries] == [("db:INSERT accounts", "ok"), ("db:INSERT accounts", "error")]
    assert queries[1]["attributes"]["db.response.status_code"] == "23505"


def test_instrument_takes_the_async_engine_or_its_sync_engine(postgres_schema: str) -> None:
    engine = create_async_engine(PG_URL)
    try:
        infratrace_sqlalchemy.instrument(engine)
        assert infratrace_sqlalchemy.instrumented(engine) and infratrace_sqlalchemy.instrumented(engine.sync_engine)
        infratrace_sqlalchemy.uninstrument(engine.sync_engine)
        assert not infratrace_sqlalchemy.instrumented(engine)
    finally:
        asyncio.run(engine.dispose())


def test_async_root_spans(postgres_schema: str, spans_of: SpanFile) -> None:
    async def work(engine: Any) -> None:
        infratrace_sqlalchemy.instrument(engine, root_spans=True)
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    asyncio.run(with_engine(postgres_schema, work))
    queries = [span for span in spans_of.spans() if span["name"].startswith("db:")]
    assert [(span["name"], span["parent_span_id"]) for span in queries] == [("db:SELECT", "")]
