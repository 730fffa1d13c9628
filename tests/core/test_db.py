"""The database helpers every database instrumentation shares: ``sanitize_sql``,
``sql_operation_and_target``, ``db_system``, and the query span of
``DatabaseInfo``/``begin_query_span``/``end_query_span`` — with property-based tests
(hypothesis) that sanitizing never raises, never lets a literal of the input through and
stays linear on hostile input."""

from __future__ import annotations

import sqlite3
import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import infratrace
from infratrace.instrumentation import (
    DatabaseInfo,
    begin_query_span,
    db_system,
    end_query_span,
    sanitize_sql,
    sql_operation_and_target,
)
from tests.conftest import SpanFile

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- sanitize_sql -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT * FROM t WHERE a = 'x' AND b = 42", "SELECT * FROM t WHERE a = ? AND b = ?"),
        ("SELECT 'it''s', 'a' 'b'", "SELECT ?, ? ?"),
        ("SELECT E'it\\'s', e'\\\\'", "SELECT ?, ?"),
        ("SELECT N'x', X'ff', B'0101', U&'d\\0061t'", "SELECT ?, ?, ?, ?"),
        ("SELECT 0xFF, 0b1010, 1.5e-3, .5, 1_000, 3.", "SELECT ?, ?, ?, ?, ?, ?"),
        ("SELECT $$it's$$, $fn$ a $$ b $fn$, $1", "SELECT ?, ?, $1"),
        ("SELECT a -- the 'secret'\nFROM t", "SELECT a FROM t"),
        ("SELECT /* outer /* inner */ still */ a", "SELECT a"),
        ("SELECT a\n\n   FROM\tt", "SELECT a FROM t"),
        ("SELECT -1, +2, x-3", "SELECT -?, +?, x-?"),
        ("SELECT t1.c2, a$b FROM t1", "SELECT t1.c2, a$b FROM t1"),
        ("WHERE id IN (1, 2, 3)", "WHERE id IN (?)"),
        ("WHERE id in (%s, %s, %s) AND x IN ('a')", "WHERE id in (?) AND x IN (?)"),
        ("WHERE id IN (-1, +2)", "WHERE id IN (?)"),
        ("WHERE id IN (SELECT id FROM u WHERE v = 1)", "WHERE id IN (SELECT id FROM u WHERE v = ?)"),
        ("WHERE (a, b) IN ((1, 2), (3, 4))", "WHERE (a, b) IN ((?, ?), (?, ?))"),
        ("WHERE id IN (a, 1)", "WHERE id IN (a, ?)"),
        ("VALUES (%s, %(name)s, ?, :x, :1)", "VALUES (%s, %(name)s, ?, :x, :1)"),
        ("SELECT x::text, '5'::int", "SELECT x::text, ?::int"),
        ('SELECT "auth_user"."id" FROM "auth_user"', 'SELECT "auth_user"."id" FROM "auth_user"'),
        ('SELECT "a""b"', 'SELECT "a""b"'),
        ("SELECT TRUE, FALSE, NULL", "SELECT TRUE, FALSE, NULL"),
        ("SELECT 'unterminated secret", "SELECT ?"),
        ("SELECT \"unterminated FROM t WHERE p = 'x'", "SELECT ?"),
        ("SELECT $tag$ never closed secret", "SELECT ?"),
        ("SELECT a /* never closed secret", "SELECT a"),
        ("", ""),
        ("   ", ""),
        ("SELECT 'é', café FROM tâble", "SELECT ?, café FROM tâble"),
    ],
)
def test_sanitize_standard_sql(sql: str, expected: str) -> None:
    assert sanitize_sql(sql) == expected


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 'it\\'s' FROM `t`", "SELECT ? FROM `t`"),
        ('SELECT "a string" # a comment', "SELECT ?"),
        ("SELECT 'a\\\\' , 'b'", "SELECT ? , ?"),
        ("SELECT `col` FROM `db`.`t` WHERE x IN ('a', \"b\")", "SELECT `col` FROM `db`.`t` WHERE x IN (?)"),
        ("SELECT $$ not a quote $$", "SELECT $$ not a quote $$"),
        ("SELECT /* a /* b */ c */", "SELECT c */"),  # MySQL comments do not nest
    ],
)
def test_sanitize_mysql(sql: str, expected: str) -> None:
    assert sanitize_sql(sql, system="mysql") == expected


def test_sanitize_reads_max_length_characters() -> None:
    sql = "SELECT a FROM t WHERE b = 'secret literal that goes on'"
    cut = sanitize_sql(sql, max_length=30)  # cut inside the literal: a literal to the end
    assert cut == "SELECT a FROM t WHERE b = ?"
    assert sanitize_sql("SELECT " + "a, " * 10_000, max_length=100).startswith("SELECT a, a,")
    assert len(sanitize_sql("SELECT " + "a, " * 10_000, max_length=100)) <= 100


def test_sanitize_default_length_is_the_value_length_limit() -> None:
    infratrace.configure({"limits": {"value_length": 50}, "trace": {"driver": "discard"}})
    try:
        assert len(sanitize_sql("SELECT " + "abc, " * 100)) <= 50
    finally:
        infratrace.configure({"trace": {"driver": "discard"}})
        infratrace.shutdown(5)


def test_sanitize_other_types() -> None:
    assert sanitize_sql(b"SELECT 'x'") == "SELECT ?"
    assert sanitize_sql(bytearray(b"SELECT 1")) == "SELECT ?"

    class Statement:
        def __str__(self) -> str:
            return "SELECT 'x' FROM t"

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    assert sanitize_sql(Statement()) == "SELECT ? FROM t"
    assert sanitize_sql(Broken()) == ""
    assert sanitize_sql(None) == "None"


# -- properties ---------------------------------------------------------------------------

MARK = "zqzq"  # in every generated literal and comment; in no word of the vocabulary
WORDS = ["SELECT", "FROM", "WHERE", "tbl", "col.name", '"quoted id"', "`back`", "IN", "AND", "OR", "NULL"]
PUNCT = ["(", ")", ",", "=", "*", ";", "-", "+", "%s", "?", "$1", ":name", "::", "%(key)s"]
secret_text = st.text(alphabet=string.ascii_letters + string.digits + " '\"\\$/*-\n#`()", max_size=20).map(lambda t: MARK + t)


def standard_literal(draw: Callable[..., Any]) -> str:
    text = draw(secret_text)
    kind = draw(st.sampled_from(["plain", "prefixed", "escape", "dollar", "line", "block", "number"]))
    if kind == "plain":
        return "'" + text.replace("'", "''") + "'"
    if kind == "prefixed":
        return draw(st.sampled_from(["N", "X", "B", "U&", "n"])) + "'" + text.replace("'", "''") + "'"
    if kind == "escape":
        # A space: "xE'...'" is the identifier xE and a standard string, whose quoting differs.
        return " E'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if kind == "dollar":
        tag = draw(st.sampled_from(["", "fn", "a_1"]))
        return f" ${tag}$" + text.replace("$", "") + f"${tag}$"  # a space: "x$fn$" is one identifier
    if kind == "line":
        return "--" + text.replace("\n", " ") + "\n"
    if kind == "block":
        return "/*" + text.replace("*", "").replace("/", "") + "*/"
    return " 98765" + draw(st.text(alphabet=string.digits, max_size=6))  # "x98765" is an identifier


def mysql_literal(draw: Callable[..., Any]) -> str:
    text = draw(secret_text)
    kind = draw(st.sampled_from(["single", "double", "doubled", "hash", "line", "block"]))
    escaped = text.replace("\\", "\\\\")
    if kind == "single":
        return "'" + escaped.replace("'", "\\'") + "'"
    if kind == "double":
        return '"' + escaped.replace('"', '\\"') + '"'
    if kind == "doubled":
        return "'" + escaped.replace("'", "''") + "'"
    if kind == "hash":
        return "#" + text.replace("\n", " ") + "\n"
    if kind == "line":
        return "-- " + text.replace("\n", " ") + "\n"
    return "/*" + text.replace("*", "") + "*/"


@st.composite
def sql_with_secrets(draw: Callable[..., Any], system: str) -> str:
    literal = mysql_literal if system == "mysql" else standard_literal
    parts = []
    for _ in range(draw(st.integers(1, 12))):
        choice = draw(st.integers(0, 2))
        if choice == 0:
            parts.append(literal(draw))
        else:
            parts.append(draw(st.sampled_from(WORDS if choice == 1 else PUNCT)))
        parts.append(draw(st.sampled_from([" ", "", "\n", "\t"])))
    if draw(st.booleans()):  # an unterminated literal or comment: the rest of the text
        openers = {"'": "'\\", '"': '"\\', " E'": "'\\", " $$": "$", " $q$": "$", "/*": "*", "--": "\n"}
        if system == "mysql":
            openers = {key: value for key, value in openers.items() if "$" not in key and key != " E'"}
        else:
            del openers['"']  # an identifier in standard SQL, not a literal
        opener = draw(st.sampled_from(sorted(openers)))
        text = draw(secret_text)
        for closing in openers[opener]:
            text = text.replace(closing, "")
        parts.append(opener + text)
    return "".join(parts)


@FUZZ
@given(
    st.sampled_from(["", "postgresql", "sqlite", "mysql"]).flatmap(
        lambda system: st.tuples(st.just(system), sql_with_secrets(system))
    )
)
def test_no_literal_or_comment_of_the_input_is_left(case: tuple[str, str]) -> None:
    system, sql = case
    out = sanitize_sql(sql, system=system)
    assert MARK not in out.lower(), (sql, out)
    assert "98765" not in out, (sql, out)
    assert "\n" not in out and "\t" not in out


@FUZZ
@given(st.text(max_size=400), st.sampled_from(["", "mysql"]), st.integers(0, 500))
def test_sanitize_never_raises_and_is_bounded(sql: str, system: str, max_length: int) -> None:
    out = sanitize_sql(sql, system=system, max_length=max_length)
    assert isinstance(out, str) and len(out) <= max_length
    assert sanitize_sql(out, system=system, max_length=max_length) == out  # nothing left to replace
    operation, table = sql_operation_and_target(sql, system=system)
    assert operation is None or (operation.replace(" ", "").isalpha() and operation.isupper())
    assert table is None or 0 < len(table) <= 128


FRAGMENTS = [
    "'",
    "''",
    '"',
    "\\",
    "\\'",
    "E'",
    "$",
    "$$",
    "$a$",
    "/*",
    "*/",
    "--",
    "#",
    "(",
    "IN (",
    "1,",
    "%(",
    "`",
    "x",
    " ",
    "\n",
]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=4), st.sampled_from(["", "mysql"]))
@pytest.mark.timeout(120)
def test_hostile_input_of_200_kb_is_linear(pattern: list[str], system: str) -> None:
    """A repeated fragment (unterminated quotes, escapes, comment openers, endless IN
    lists), 200 kB, read whole: a quadratic scan would take hours; the timeout fails it."""
    unit = "".join(pattern)
    sql = unit * (200_000 // len(unit) + 1)
    out = sanitize_sql(sql, system=system, max_length=len(sql))
    assert len(out) <= len(sql)
    sql_operation_and_target(sql, system=system)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("system", ["", "mysql"])
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT '" + "a" * 1_000_000,
        "'" * 1_000_001,
        "E'\\" * 333_334,
        "/*" * 500_000,
        "(" * 1_000_000,
        "x IN (" + "1," * 500_000,
        "$a$" * 333_334,
        "SELECT a FROM b WHERE c = 'd' " * 35_000,
    ],
    ids=["unterminated", "quotes", "escapes", "comments", "parentheses", "in-list", "dollars", "queries"],
)
def test_a_one_megabyte_query(sql: str, system: str) -> None:
    assert len(sanitize_sql(sql, system=system, max_length=2_000_000)) <= len(sql)
    sanitize_sql(sql, system=system)  # the default: the first value_length characters


# -- sql_operation_and_target ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ('SELECT "auth_user"."id" FROM "auth_user" WHERE "auth_user"."id" = %s', ("SELECT", "auth_user")),
        ("select count(*) from public.orders o join items i on i.o = o.id", ("SELECT", "public.orders")),
        ('SELECT a FROM "public"."my ""table"""', ("SELECT", 'public.my "table"')),
        ("SELECT EXTRACT(YEAR FROM d), (SELECT 1 FROM x) FROM events", ("SELECT", "events")),
        ("SELECT 1", ("SELECT", None)),
        ("SELECT * FROM (SELECT 1) AS sub", ("SELECT", None)),
        ("SELECT * FROM ONLY parent", ("SELECT", "parent")),
        ("(SELECT a FROM x) UNION (SELECT a FROM y)", ("SELECT", "x")),
        ('INSERT INTO "orders" ("a") VALUES (%s) RETURNING "orders"."id"', ("INSERT", "orders")),
        ("INSERT OR REPLACE INTO t VALUES (1)", ("INSERT", "t")),
        ("REPLACE INTO `db`.`t` VALUES (1)", ("REPLACE", "db.t")),
        ("UPDATE ONLY t SET a = 1", ("UPDATE", "t")),
        ("UPDATE OR IGNORE t SET a = 1", ("UPDATE", "t")),
        ('DELETE FROM "t" WHERE id IN (1, 2)', ("DELETE", "t")),
        ("MERGE INTO target USING source ON x WHEN MATCHED THEN DELETE", ("MERGE", "target")),
        ("WITH a AS (SELECT 1 FROM x), b (c) AS (SELECT 2) SELECT * FROM a JOIN b ON true", ("SELECT", "a")),
        ("WITH RECURSIVE r AS (SELECT 1 UNION ALL SELECT n FROM r) INSERT INTO out SELECT * FROM r", ("INSERT", "out")),
        ("WITH del AS (DELETE FROM old RETURNING *) UPDATE totals SET n = 1", ("UPDATE", "totals")),
        ("WITH x AS (SELECT 1)", ("WITH", None)),
        ('CREATE TABLE IF NOT EXISTS "accounts" (id serial)', ("CREATE TABLE", "accounts")),
        ("CREATE TEMPORARY TABLE tmp AS SELECT 1", ("CREATE TABLE", "tmp")),
        ("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS idx ON s.t (a)", ("CREATE INDEX", "s.t")),
        ("CREATE MATERIALIZED VIEW mv AS SELECT 1", ("CREATE MATERIALIZED VIEW", "mv")),
        ("CREATE OR REPLACE VIEW v AS SELECT 1", ("CREATE VIEW", "v")),
        ("CREATE SCHEMA s", ("CREATE SCHEMA", None)),
        ("DROP TABLE IF EXISTS a, b", ("DROP TABLE", "a")),
        ("ALTER TABLE ONLY t ADD COLUMN c int", ("ALTER TABLE", "t")),
        ("TRUNCATE TABLE t", ("TRUNCATE", "t")),
        ("TRUNCATE t RESTART IDENTITY", ("TRUNCATE", "t")),
        ("TABLE t", ("SELECT", "t")),
        ('SAVEPOINT "s140_x1"', ("SAVEPOINT", None)),
        ('RELEASE SAVEPOINT "s140_x1"', ("RELEASE SAVEPOINT", None)),
        ("RELEASE s1", ("RELEASE SAVEPOINT", None)),
        ('ROLLBACK TO SAVEPOINT "s140_x1"', ("ROLLBACK TO SAVEPOINT", None)),
        ("ROLLBACK", ("ROLLBACK", None)),
        ("BEGIN", ("BEGIN", None)),
        ("begin immediate", ("BEGIN", None)),
        ("START TRANSACTION ISOLATION LEVEL SERIALIZABLE", ("START TRANSACTION", None)),
        ("COMMIT", ("COMMIT", None)),
        ("SET search_path TO x", ("SET", None)),
        ("PRAGMA foreign_keys = ON", ("PRAGMA", None)),
        ("  /* a comment */ -- and another\n select 1 from t", ("SELECT", "t")),
        ("hello world", (None, None)),
        ("'SELECT' FROM t", (None, None)),
        ("", (None, None)),
        ("?", (None, None)),
    ],
)
def test_operation_and_target(sql: str, expected: tuple[str | None, str | None]) -> None:
    assert sql_operation_and_target(sql) == expected


def test_target_names_are_bounded() -> None:
    operation, table = sql_operation_and_target("SELECT a FROM " + "t" * 1000)
    assert operation == "SELECT" and table == "t" * 128


@pytest.mark.parametrize(
    ("name", "system"),
    [
        ("postgresql", "postgresql"),
        ("PostgreSQL", "postgresql"),
        ("postgres", "postgresql"),
        ("sqlite", "sqlite"),
        ("sqlite3", "sqlite"),
        ("mysql", "mysql"),
        ("mariadb", "mariadb"),
        ("oracle", "oracle"),
        ("mssql", "mssql"),
        ("microsoft", "mssql"),
        ("something else", "other_sql"),
        (None, "other_sql"),
    ],
)
def test_db_system(name: Any, system: str) -> None:
    assert db_system(name) == system


# -- the query span -------------------------------------------------------------------------


@pytest.fixture
def spans_of(span_file: Callable[..., SpanFile]) -> SpanFile:
    return span_file()


def test_no_current_span_no_query_span(spans_of: SpanFile) -> None:
    db = DatabaseInfo("sqlite", namespace="main")
    assert begin_query_span(db, "SELECT 1") is None
    end_query_span(None)  # harmless
    assert spans_of.spans() == []


def test_query_span_name_and_attributes(spans_of: SpanFile) -> None:
    db = DatabaseInfo(
        "postgresql", namespace="shop", server_address="db.internal", server_port="5432", module="test", service="api"
    )
    with infratrace.begin("service:checkout") as parent:
        span = begin_query_span(db, "SELECT * FROM \"orders\" WHERE id = 7 AND note = 'top secret'")
        assert span is not None and infratrace.current_span() is parent  # a query is not made current
        end_query_span(span)
        end_query_span(begin_query_span(db, "INSERT INTO orders VALUES (%s)", batch_size=5))
        end_query_span(begin_query_span(db, "INSERT INTO orders VALUES (%s)", batch_size=1))
        end_query_span(begin_query_span(db, "COMMIT"))
        end_query_span(begin_query_span(db, "it is not SQL"))
    spans = spans_of.spans()
    select, batch, single, commit, unknown, job = spans
    assert job["name"] == "service:checkout"
    assert select["name"] == "db:SELECT orders" and select["kind"] == "client"
    assert select["parent_span_id"] == job["span_id"] and select["target"] == "orders" and select["service_name"] == "api"
    assert select["attributes"] == {
        "kind": "db",
        "module": "test",
        "service": "api",
        "db.system": "postgresql",
        "db.namespace": "shop",
        "server.address": "db.internal",
        "server.port": 5432,
        "db.operation.name": "SELECT",
        "db.collection.name": "orders",
        "target": "orders",
        "db.query.text": 'SELECT * FROM "orders" WHERE id = ? AND note = ?',
    }
    assert batch["name"] == "db:INSERT orders" and batch["attributes"]["db.operation.batch.size"] == 5
    assert "db.operation.batch.size" not in single["attributes"]
    assert commit["name"] == "db:COMMIT" and "db.collection.name" not in commit["attributes"]
    assert unknown["name"] == "db:postgresql" and "db.operation.name" not in unknown["attributes"]
    assert unknown["attributes"]["target"] == "postgresql"


def test_root_spans(spans_of: SpanFile) -> None:
    db = DatabaseInfo("sqlite", root_spans=True)
    end_query_span(begin_query_span(db, "SELECT 1"))
    (span,) = spans_of.spans()
    assert span["parent_span_id"] == "" and span["name"] == "db:SELECT"
    assert "db.namespace" not in span["attributes"] and "server.address" not in span["attributes"]


def test_bad_server_port_is_left_out() -> None:
    assert DatabaseInfo("mysql", server_port="socket").server_port == 0
    assert DatabaseInfo("mysql", server_port=70000).server_port == 0
    assert DatabaseInfo("mysql", server_port=3306).server_port == 3306


def test_statements_are_cached_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from infratrace import _db

    monkeypatch.setattr(_db, "MAX_STATEMENTS", 3)
    db = DatabaseInfo("sqlite")
    first = db.statement("SELECT a FROM t")
    assert db.statement("SELECT a FROM t") is first
    for number in range(3):
        db.statement(f"SELECT a FROM t{number}")
    assert len(db._statements) <= 3 and db.statement("SELECT a FROM t") is not first
    db.statement('SAVEPOINT "s1_x1"')  # a unique name per savepoint: never cached
    assert 'SAVEPOINT "s1_x1"' not in db._statements


def test_error_span_from_a_real_driver_error(spans_of: SpanFile) -> None:
    db = DatabaseInfo("sqlite")
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE t (email TEXT UNIQUE)")
    connection.execute("INSERT INTO t VALUES ('a@example.com')")
    with infratrace.begin("service:signup"):
        span = begin_query_span(db, "INSERT INTO t VALUES ('a@example.com')")
        with pytest.raises(sqlite3.IntegrityError) as raised:
            try:
                connection.execute("INSERT INTO t VALUES ('a@example.com')")
            except BaseException as exc:
                end_query_span(span, exc)
                raise
    assert isinstance(raised.value, sqlite3.IntegrityError)  # the caller's exception, untouched
    failed = spans_of.by_name()["db:INSERT t"]
    assert failed["status"] == "error"
    assert failed["status_message"] == "IntegrityError: UNIQUE constraint failed: t.email"
    assert failed["attributes"]["error.type"] == "IntegrityError"
    assert failed["attributes"]["db.response.status_code"] == "SQLITE_CONSTRAINT_UNIQUE"
    assert "a@example.com" not in spans_of.path.read_text()


def test_error_message_keeps_the_first_line_without_literals(spans_of: SpanFile) -> None:
    class DriverError(Exception):
        sqlstate = "23505"

    class WrapperError(Exception):
        pass

    try:
        try:
            raise DriverError("Duplicate entry 'bob@example.com' for key 42\nDETAIL: Key (email)=(bob@example.com) exists.")
        except DriverError as inner:
            raise WrapperError(str(inner)) from inner
    except WrapperError as exc:
        error = exc
    with infratrace.begin("service:x"):
        end_query_span(begin_query_span(DatabaseInfo("mysql"), "INSERT INTO t VALUES (%s)"), error)
    failed = spans_of.by_name()["db:INSERT t"]
    assert failed["status_message"] == "WrapperError: Duplicate entry ? for key ?"
    assert failed["attributes"]["db.response.status_code"] == "23505"  # found on the wrapped driver error
    assert "bob@example.com" not in spans_of.path.read_text()


def test_over_the_budget_queries_are_counted_not_recorded(spans_of: SpanFile) -> None:
    db = DatabaseInfo("sqlite")
    with infratrace.begin("service:loop") as parent, infratrace.span_budget(3) as budget:
        for _ in range(10):
            end_query_span(begin_query_span(db, "SELECT 1"))
    assert budget.used == 3 and budget.dropped == 7
    assert [span["name"] for span in spans_of.spans()] == ["db:SELECT"] * 3 + ["service:loop"]
    assert parent.ended


def test_a_failing_hook_never_raises(spans_of: SpanFile) -> None:
    class Broken:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("broken")

    class Hook:
        def begin(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("broken")

        def start_span(self, *args: Any, **kwargs: Any) -> Any:
            return Broken()

        def trace(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("broken")

        def current_span(self) -> Any:
            return object()

        def configure(self, config: Any) -> None:
            pass

        def stats(self) -> dict[str, Any]:
            return {}

        def force_flush(self, timeout: float | None = None) -> bool:
            return True

        def shutdown(self, timeout: float | None = None) -> bool:
            return True

    infratrace.set_hook(Hook())
    span = begin_query_span(DatabaseInfo("sqlite"), "SELECT 1")
    end_query_span(span)
    end_query_span(span, ValueError("x"))
