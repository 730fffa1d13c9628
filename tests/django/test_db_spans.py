"""``db:`` spans for Django's queries (``connection.execute_wrapper``), through Django's
real request path (the test Client runs the WSGI handler and the middleware chain;
AsyncClient the ASGI one), on SQLite (a file per test run) and PostgreSQL at
127.0.0.1:5432 (a schema of its own per test run; skipped when unreachable).

The session's settings have no databases: the aliases ``sqlite`` and ``pg`` are added
to ``django.db.connections`` for this module and removed after it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import IntegrityError, connections, models, transaction
from django.http import HttpRequest, JsonResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path
from infratrace_django import DjangoOptions, TraceMiddleware
from infratrace_django._db import QueryTracer, uninstrument_connection

import infratrace
from infratrace import ConfigError
from tests.conftest import SpanFile
from tests.servers import postgres_up

RUN = uuid.uuid4().hex[:12]
SCHEMA = f"infratrace_test_{RUN}"
PG_PASSWORD_LITERAL = f"hunter2-{RUN}"  # written into a query's text, must never be written out
PARAM_SECRET = f"param-secret-{RUN}"  # passed as a parameter, must never be written out
TABLE = "infratrace_account"


class Account(models.Model):
    email = models.CharField(max_length=200, unique=True)
    password = models.CharField(max_length=200)

    class Meta:
        app_label = "infratrace_db_tests"
        db_table = TABLE


PG_UP = postgres_up()
ALIASES = [
    "sqlite",
    pytest.param("pg", marks=pytest.mark.skipif(not PG_UP, reason="PostgreSQL is not reachable at 127.0.0.1:5432")),
]


def add_alias(alias: str, config: dict[str, Any]) -> None:
    connections.settings[alias] = connections.configure_settings({"default": config})["default"]


@pytest.fixture(scope="module", autouse=True)
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    sqlite_file = tmp_path_factory.mktemp("db") / "test.sqlite3"
    aliases = {"sqlite": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(sqlite_file)}}
    if PG_UP:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{SCHEMA}"')
        aliases["pg"] = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "test",
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": "5432",
            "OPTIONS": {"options": f"-c search_path={SCHEMA}"},
        }
    for alias, config in aliases.items():
        add_alias(alias, config)
        with connections[alias].schema_editor() as editor:  # no current span: not traced
            editor.create_model(Account)
    yield list(aliases)
    for alias in aliases:
        connections[alias].close()
        del connections[alias]
        del connections.settings[alias]
    if PG_UP:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres", autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{SCHEMA}" CASCADE')


@pytest.fixture(autouse=True)
def _empty_tables(databases: list[str]) -> Iterator[None]:
    yield
    for alias in databases:
        with connections[alias].cursor() as cursor:
            cursor.execute(f"DELETE FROM {TABLE}")


# -- the views --------------------------------------------------------------------------


def lookup(request: HttpRequest, alias: str) -> JsonResponse:
    count = Account.objects.using(alias).filter(email=PARAM_SECRET).count()
    with connections[alias].cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {TABLE} WHERE password = '{PG_PASSWORD_LITERAL}' OR id = 12345")
        literal = cursor.fetchone()[0]
    return JsonResponse({"count": count, "literal": literal})


def duplicate(request: HttpRequest, alias: str) -> JsonResponse:
    Account.objects.using(alias).create(email="dup@example.com", password="x")
    try:
        Account.objects.using(alias).create(email="dup@example.com", password="y")
    except IntegrityError as exc:
        cause = exc.__cause__
        return JsonResponse(
            {
                "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                "cause": f"{type(cause).__module__}.{type(cause).__qualname__}",
                "message": str(exc),
            },
            status=409,
        )
    return JsonResponse({"type": None}, status=500)


def many(request: HttpRequest, alias: str) -> JsonResponse:
    with connections[alias].cursor() as cursor:
        for number in range(500):
            cursor.execute("SELECT %s", [number])
    return JsonResponse({"queries": 500})


def nested_atomic(request: HttpRequest, alias: str) -> JsonResponse:
    with transaction.atomic(using=alias), transaction.atomic(using=alias):
        Account.objects.using(alias).create(email="atomic@example.com", password="x")
    return JsonResponse({"count": Account.objects.using(alias).count()})


def batch(request: HttpRequest, alias: str) -> JsonResponse:
    rows = [(f"batch{number}@example.com", PARAM_SECRET) for number in range(3)]
    with connections[alias].cursor() as cursor:
        cursor.executemany(f"INSERT INTO {TABLE} (email, password) VALUES (%s, %s)", rows)
    return JsonResponse({"count": Account.objects.using(alias).count()})


def both(request: HttpRequest) -> JsonResponse:
    return JsonResponse({alias: Account.objects.using(alias).count() for alias in connections.settings if alias != "default"})


async def async_count(request: HttpRequest, alias: str) -> JsonResponse:
    return JsonResponse({"count": await Account.objects.using(alias).acount()})


urlpatterns = [
    path("lookup/<str:alias>/", lookup),
    path("duplicate/<str:alias>/", duplicate),
    path("many/<str:alias>/", many),
    path("atomic/<str:alias>/", nested_atomic),
    path("batch/<str:alias>/", batch),
    path("both/", both),
    path("async/<str:alias>/", async_count),
]

pytestmark = pytest.mark.usefixtures("_urls")


@pytest.fixture
def _urls() -> Iterator[None]:
    with override_settings(ROOT_URLCONF=__name__):
        yield


@pytest.fixture
def spans_of(span_file: Callable[..., SpanFile]) -> SpanFile:
    return span_file()


def named(spans: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [span for span in spans if span["name"].startswith(prefix)]


def one(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [span for span in spans if span["name"] == name]
    assert len(found) == 1, f"{name}: {[span['name'] for span in spans]}"
    return found[0]


def system_of(alias: str) -> str:
    return "postgresql" if alias == "pg" else "sqlite"


# -- tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("alias", ALIASES)
def test_queries_are_client_children_of_the_view(spans_of: SpanFile, alias: str) -> None:
    response = Client().get(f"/lookup/{alias}/")
    assert response.json() == {"count": 0, "literal": 0}
    spans = spans_of.spans()
    web = one(spans, "web:tests.django.test_db_spans.lookup")
    queries = named(spans, "db:")
    assert [span["name"] for span in queries] == [f"db:SELECT {TABLE}"] * 2
    for span in queries:
        assert span["kind"] == "client" and span["status"] == "ok"
        assert span["parent_span_id"] == web["span_id"] and span["trace_id"] == web["trace_id"]
        attrs = span["attributes"]
        assert attrs["db.system"] == system_of(alias)
        assert attrs["db.operation.name"] == "SELECT" and attrs["db.collection.name"] == TABLE
        assert attrs["kind"] == "db" and attrs["module"] == "django" and span["target"] == TABLE
        assert span["start_time_unix_nano"] >= web["start_time_unix_nano"]
        assert span["end_time_unix_nano"] <= web["end_time_unix_nano"]
    orm, raw = (span["attributes"] for span in queries)
    placeholder = "%s"
    assert orm["db.query.text"].startswith(f'SELECT COUNT(*) AS "__count" FROM "{TABLE}" WHERE "{TABLE}"."email" = {placeholder}')
    assert raw["db.query.text"] == f"SELECT COUNT(*) FROM {TABLE} WHERE password = ? OR id = ?"
    if alias == "pg":
        assert orm["db.namespace"] == "test" and orm["server.address"] == "127.0.0.1" and orm["server.port"] == 5432
    else:
        assert orm["db.namespace"].endswith("test.sqlite3") and "server.address" not in orm


@pytest.mark.parametrize("alias", ALIASES)
def test_no_literal_or_parameter_reaches_the_output(spans_of: SpanFile, alias: str) -> None:
    assert Client().get(f"/lookup/{alias}/").status_code == 200
    assert Client().get(f"/batch/{alias}/").status_code == 200
    assert len(named(spans_of.spans(), "db:")) >= 3
    text = spans_of.path.read_text()
    assert PG_PASSWORD_LITERAL not in text and "12345" not in text
    assert PARAM_SECRET not in text


@pytest.mark.parametrize("alias", ALIASES)
def test_a_failing_query_is_an_error_span_and_the_view_gets_the_exception_unchanged(spans_of: SpanFile, alias: str) -> None:
    traced = Client().get(f"/duplicate/{alias}/")
    with connections[alias].cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE}")
    with override_settings(INFRATRACE_DJANGO={"database_spans": False}):
        untraced = Client().get(f"/duplicate/{alias}/")
    assert traced.status_code == untraced.status_code == 409
    assert traced.json() == untraced.json()  # same exception, same cause, same message
    body = traced.json()
    assert body["type"] == "django.db.utils.IntegrityError"
    assert body["cause"] == ("psycopg.errors.UniqueViolation" if alias == "pg" else "sqlite3.IntegrityError")
    spans = spans_of.spans()
    inserts = named(spans, f"db:INSERT {TABLE}")
    assert len(inserts) == 2  # the untraced request wrote none
    ok, failed = inserts
    assert ok["status"] == "ok"
    assert failed["status"] == "error" and failed["status_code"] == 1
    attrs = failed["attributes"]
    assert attrs["error.type"] == "IntegrityError"
    assert failed["status_message"].startswith("IntegrityError: ")
    if alias == "pg":
        assert attrs["db.response.status_code"] == "23505"  # unique_violation
        assert "DETAIL" not in failed["status_message"]  # the line that quotes the values
    else:
        assert attrs["db.response.status_code"] == "SQLITE_CONSTRAINT_UNIQUE"
    (http,) = [span for span in named(spans, "http:") if span["trace_id"] == failed["trace_id"]]
    assert http["status"] == "ok" and http["status_code"] == 409  # the view handled it


@pytest.mark.parametrize("alias", ALIASES)
def test_savepoints_of_nested_atomic_blocks_are_spans(spans_of: SpanFile, alias: str) -> None:
    assert Client().get(f"/atomic/{alias}/").json() == {"count": 1}
    names = [span["name"] for span in named(spans_of.spans(), "db:")]
    # SQLite's transaction begins with a BEGIN query; PostgreSQL's by switching autocommit off
    # (no query). Commit is the driver's commit(), not a query, on both.
    begin = ["db:BEGIN"] if alias == "sqlite" else []
    assert names == [*begin, "db:SAVEPOINT", f"db:INSERT {TABLE}", "db:RELEASE SAVEPOINT", f"db:SELECT {TABLE}"]


@pytest.mark.parametrize("alias", ALIASES)
def test_executemany_is_one_span_with_the_batch_size(spans_of: SpanFile, alias: str) -> None:
    assert Client().get(f"/batch/{alias}/").json() == {"count": 3}
    insert = one(spans_of.spans(), f"db:INSERT {TABLE}")
    assert insert["attributes"]["db.operation.batch.size"] == 3
    assert insert["attributes"]["db.query.text"] == f"INSERT INTO {TABLE} (email, password) VALUES (%s, %s)"


@pytest.mark.parametrize("alias", ALIASES)
def test_five_hundred_queries_stay_within_the_request_span_budget(spans_of: SpanFile, alias: str) -> None:
    with override_settings(INFRATRACE_DJANGO={"span_budget": 100}):
        before = infratrace.stats()["budget_dropped_count"]
        assert Client().get(f"/many/{alias}/").json() == {"queries": 500}
        dropped = infratrace.stats()["budget_dropped_count"] - before
    spans = spans_of.spans()
    queries = named(spans, "db:SELECT")
    assert len(queries) == 99  # the budget counts the web: span and everything under it
    assert queries[0]["attributes"]["db.query.text"] == "SELECT %s"
    http = one(spans, "http:GET many/<str:alias>/")
    assert http["attributes"]["infratrace.spans_dropped"] == 401 == dropped


def test_queries_to_two_databases_in_one_request(spans_of: SpanFile, databases: list[str]) -> None:
    counts = Client().get("/both/").json()
    assert counts == dict.fromkeys(databases, 0)
    spans = spans_of.spans()
    web = one(spans, "web:tests.django.test_db_spans.both")
    queries = named(spans, "db:")
    assert sorted(span["attributes"]["db.system"] for span in queries) == sorted(system_of(alias) for alias in databases)
    assert all(span["parent_span_id"] == web["span_id"] for span in queries)


@pytest.mark.parametrize("alias", ALIASES)
def test_async_view_under_asgi(spans_of: SpanFile, alias: str) -> None:
    response = asyncio.run(AsyncClient().get(f"/async/{alias}/"))
    assert response.json() == {"count": 0}
    spans = spans_of.spans()
    web = one(spans, "web:tests.django.test_db_spans.async_count")
    query = one(spans, f"db:SELECT {TABLE}")
    assert query["parent_span_id"] == web["span_id"]


@pytest.mark.parametrize("alias", ALIASES)
def test_outside_a_request_only_under_a_current_span(spans_of: SpanFile, alias: str) -> None:
    Account.objects.using(alias).count()  # no current span: no trace of its own
    with infratrace.begin("service:nightly.report") as job:
        Account.objects.using(alias).filter(email="a@example.com").exists()
    spans = spans_of.spans()
    queries = named(spans, "db:")
    assert [span["name"] for span in queries] == [f"db:SELECT {TABLE}"]
    assert queries[0]["parent_span_id"] == job.span_id


@pytest.mark.parametrize("alias", ALIASES)
def test_root_spans_option(spans_of: SpanFile, alias: str) -> None:
    with override_settings(INFRATRACE_DJANGO={"database_root_spans": True}):
        Account.objects.using(alias).count()
    Account.objects.using(alias).count()  # the option is off again
    queries = named(spans_of.spans(), "db:")
    assert len(queries) == 1 and queries[0]["parent_span_id"] == ""


@pytest.mark.parametrize("alias", ALIASES)
def test_database_spans_off(spans_of: SpanFile, alias: str) -> None:
    with override_settings(INFRATRACE_DJANGO={"database_spans": False}):
        assert Client().get(f"/lookup/{alias}/").status_code == 200
        assert not any(isinstance(wrapper, QueryTracer) for wrapper in connections[alias].execute_wrappers)
    assert any(isinstance(wrapper, QueryTracer) for wrapper in connections[alias].execute_wrappers)
    assert Client().get(f"/lookup/{alias}/").status_code == 200
    spans = spans_of.spans()
    assert len(named(spans, "http:")) == 2
    assert len(named(spans, "db:")) == 2  # the second request's two queries only


def test_the_middleware_alone_turns_database_spans_on(spans_of: SpanFile) -> None:
    """Without the app's ready() (the middleware only in MIDDLEWARE): building the
    middleware installs the wrapper on the connections that exist and connects the
    signal for the ones to come."""
    from django.db.backends.signals import connection_created
    from infratrace_django._db import SIGNAL_UID

    connection = connections["sqlite"]
    connection.ensure_connection()
    uninstrument_connection(connection)
    connection_created.disconnect(dispatch_uid=SIGNAL_UID)
    assert not connection_created.has_listeners()
    TraceMiddleware(lambda request: None)
    assert sum(isinstance(wrapper, QueryTracer) for wrapper in connection.execute_wrappers) == 1
    assert connection_created.has_listeners()
    TraceMiddleware(lambda request: None)  # idempotent
    assert sum(isinstance(wrapper, QueryTracer) for wrapper in connection.execute_wrappers) == 1


def test_a_new_connection_gets_the_wrapper_once(spans_of: SpanFile) -> None:
    connection = connections["sqlite"]
    connection.close()
    connection.ensure_connection()  # connection_created again, on the same connection object
    connection.close()
    connection.ensure_connection()
    assert sum(isinstance(wrapper, QueryTracer) for wrapper in connection.execute_wrappers) == 1
    with infratrace.begin("service:x"):
        Account.objects.using("sqlite").count()
    assert len(named(spans_of.spans(), "db:")) == 1
    assert not named(spans_of.spans(), "event:connection_created")


def test_signal_tracing_does_not_trace_our_receiver(spans_of: SpanFile) -> None:
    with infratrace.begin("service:reconnect"):
        connections["sqlite"].close()
        Account.objects.using("sqlite").count()  # connects: connection_created is sent
    names = [span["name"] for span in spans_of.spans()]
    assert "event:connection_created" not in names and f"db:SELECT {TABLE}" in names


@pytest.mark.parametrize("key", ["database_spans", "database_root_spans"])
def test_option_validation(key: str) -> None:
    with pytest.raises(ConfigError, match=f'INFRATRACE_DJANGO.{key} = "yes" is invalid: expected True or False'):
        DjangoOptions.from_mapping({key: "yes"})
    assert getattr(DjangoOptions.from_mapping({key: False}), key) is False
    assert DjangoOptions.from_mapping(None).database_spans is True
    assert DjangoOptions.from_mapping(None).database_root_spans is False


def test_a_faulty_tracer_never_reaches_the_query(spans_of: SpanFile) -> None:
    """A tracer whose spans fail to begin or end: the query runs and returns as without it."""

    class Broken:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("broken tracer")

    tracer = infratrace.get_hook()

    class FailingHook:
        def begin(self, *args: Any, **kwargs: Any) -> Any:
            return tracer.begin(*args, **kwargs)

        def start_span(self, name: str, *args: Any, **kwargs: Any) -> Any:
            if name.startswith("db:"):
                return Broken()
            return tracer.start_span(name, *args, **kwargs)

        def trace(self, *args: Any, **kwargs: Any) -> Any:
            return tracer.trace(*args, **kwargs)

        def current_span(self) -> Any:
            return tracer.current_span()

        def configure(self, config: Any) -> None:
            tracer.configure(config)

        def stats(self) -> dict[str, Any]:
            return tracer.stats()

        def force_flush(self, timeout: float | None = None) -> bool:
            return tracer.force_flush(timeout)

        def shutdown(self, timeout: float | None = None) -> bool:
            return tracer.shutdown(timeout)

    infratrace.set_hook(FailingHook())
    response = Client().get("/lookup/sqlite/")
    assert response.status_code == 200 and response.json() == {"count": 0, "literal": 0}
