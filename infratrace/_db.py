"""Database query spans, shared by every database instrumentation (Django's
``execute_wrapper``, SQLAlchemy's engine events, a third party's driver hook).

- :func:`sanitize_sql`: the query text with its literals replaced by ``?`` — what
  ``db.query.text`` records; parameter values are never part of it (drivers send them
  apart from the text) and literals written into the text are removed.
- :func:`sql_operation_and_target`: ``("SELECT", "auth_user")`` — the operation and the
  main table, for the span name and ``db.operation.name``/``db.collection.name``.
- :class:`DatabaseInfo`: what a connection talks to (``db.system``, ``db.namespace``,
  ``server.address``/``server.port``), plus the per-statement cache of the above.
- :func:`begin_query_span` / :func:`end_query_span`: one ``client`` span per query,
  ``db:<operation> <table>``.

Scanning is one pass of a tokenizer over at most ``max_length`` characters, each token
pattern linear (no nested quantifier that can fail and backtrack), so a hostile or
huge query costs time in proportion to ``max_length``, not more. Nothing here raises
into the caller.
"""

from __future__ import annotations

import re
from typing import Any

from . import _spandata, _tracer
from ._span import CLIENT, NonRecordingSpan, Span, _current

__all__ = [
    "DatabaseInfo",
    "begin_query_span",
    "db_system",
    "end_query_span",
    "sanitize_sql",
    "sql_operation_and_target",
]

AnySpan = Span | NonRecordingSpan

# -- the tokenizer ------------------------------------------------------------------------
#
# Token kinds (the group names below). Every alternative that opens a quote or a comment
# matches whatever follows, up to its end or to the end of the text (an unterminated
# literal is a literal to the end): once started it cannot fail, so nothing is ever
# rescanned. ``[^']+`` inside ``(...)*`` would backtrack exponentially only if what
# follows the loop could fail; it cannot, as the loop stops at a quote or the end.

_COMMON_TAIL = r"""
  | (?P<num>0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+
      |(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9]+)?)
  | (?P<op>::|%%)
  | (?P<param>\$[0-9]+|%\([^()%]{0,64}\)s|%s|\?|:[^\W\d]\w*|:[0-9]+)
  | (?P<word>[^\W\d][\w$]*)
  | (?P<bid>`(?:[^`]+|``)*(?:`|\Z))
  | (?P<punct>[\s\S])
"""

# PostgreSQL, SQLite, Oracle, SQL Server and anything unknown: standard SQL quoting
# ('' inside a string, "..." an identifier), E'...' with backslash escapes, dollar
# quoting, nested /* */ comments.
_STANDARD = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<lc>--[^\n]*)
  | (?P<bc>/\*)
  | (?P<dollar>\$(?:[^\W\d][\w]*)?\$)
  | (?P<lit>[eE]'(?:[^'\\]+|\\[\s\S]?|'')*(?:'|\Z))
  | (?P<str>(?:[xXbBnN]|[uU]&)?'(?:[^']+|'')*(?:'|\Z))
  | (?P<qid>"(?:[^"]+|"")*(?:"|\Z))
"""
    + _COMMON_TAIL,
    re.VERBOSE,
)

# MySQL and MariaDB: backslash escapes in strings, "..." is a string (the default
# sql_mode), `...` an identifier, # starts a comment, /* */ does not nest.
_MYSQL = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<lc>(?:--|\#)[^\n]*)
  | (?P<bc>/\*)
  | (?P<lit>(?:[xXbBnN])?'(?:[^'\\]+|\\[\s\S]?|'')*(?:'|\Z)|"(?:[^"\\]+|\\[\s\S]?|"")*(?:"|\Z))
"""
    + _COMMON_TAIL,
    re.VERBOSE,
)

_COMMENT_EDGE = re.compile(r"/\*|\*/")
_MYSQL_SYSTEMS = frozenset({"mysql", "mariadb"})

# Token kinds kept for the statement parser: a bare word, a quoted identifier (its
# text unquoted), a value (literal or placeholder), a punctuation character.
_WORD, _QUOTED, _VALUE, _PUNCT = "w", "q", "v", "p"
Token = tuple[str, str]


def _skip_block_comment(sql: str, start: int, nested: bool) -> int:
    """The index after the comment that opens at ``start`` (``/*``); the end of the
    text when it is not closed. Linear: one forward search per nesting edge."""
    if not nested:
        end = sql.find("*/", start + 2)
        return len(sql) if end < 0 else end + 2
    depth = 0
    for edge in _COMMENT_EDGE.finditer(sql, start):
        if edge.group() == "/*":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return edge.end()
    return len(sql)


def _unquote(text: str) -> str:
    quote = text[0]
    inner = text[1:-1] if len(text) > 1 and text[-1] == quote else text[1:]
    return inner.replace(quote * 2, quote)


def _scan(sql: str, system: str, max_length: int) -> tuple[str, list[Token]]:
    """``(sanitized text, tokens for the statement parser)``."""
    if len(sql) > max_length:
        sql = sql[:max_length]  # a literal cut here is unterminated: a literal to the end
    mysql = system in _MYSQL_SYSTEMS
    pattern = _MYSQL if mysql else _STANDARD
    out: list[str] = []
    tokens: list[Token] = []
    # Open parentheses: [index of "(" in out, collapsible IN-list?, state]; state 0:
    # a value may follow, 1: a value was just written, -1: not a list of values.
    frames: list[list[Any]] = []
    space = False
    pos = 0
    end = len(sql)
    match = pattern.match
    while pos < end:
        m = match(sql, pos)
        if m is None:  # not reachable: the last alternative takes any character
            break
        kind = m.lastgroup
        text = m.group()
        pos = m.end()
        if kind == "ws" or kind == "lc":
            space = True
            continue
        if kind == "bc":
            pos = _skip_block_comment(sql, m.start(), nested=not mysql)
            space = True
            continue
        if kind == "dollar":
            close = sql.find(text, pos)
            pos = end if close < 0 else close + len(text)
            kind = "lit"
        if space and out:
            out.append(" ")
        space = False
        frame = frames[-1] if frames else None
        if kind == "lit" or kind == "str" or kind == "num":
            out.append("?")
            tokens.append((_VALUE, "?"))
            if frame is not None and frame[1]:
                frame[2] = 1 if frame[2] == 0 else -1
            continue
        if kind == "qid":
            if len(text) < 2 or text[-1] != '"':  # unterminated: may hold anything
                out.append("?")
                tokens.append((_VALUE, "?"))
                if frame is not None:
                    frame[2] = -1
                continue
            tokens.append((_QUOTED, _unquote(text)))
        elif kind == "bid":
            if len(text) < 2 or text[-1] != "`":
                out.append("?")
                tokens.append((_VALUE, "?"))
                if frame is not None:
                    frame[2] = -1
                continue
            tokens.append((_QUOTED, _unquote(text)))
        elif kind == "param":
            out.append(text)
            tokens.append((_VALUE, text))
            if frame is not None and frame[1]:
                frame[2] = 1 if frame[2] == 0 else -1
            continue
        elif kind == "word":
            tokens.append((_WORD, text))
        else:  # punct, op
            tokens.append((_PUNCT, text))
            if text == "(":
                if frame is not None:
                    frame[2] = -1  # a nested parenthesis: the outer one is no plain list
                previous = tokens[-2] if len(tokens) > 1 else None
                in_list = previous is not None and previous[0] == _WORD and previous[1].upper() == "IN"
                frames.append([len(out), in_list, 0])
                out.append("(")
                continue
            if text == ")" and frame is not None:
                frames.pop()
                if frame[1] and frame[2] == 1:
                    del out[frame[0] :]
                    out.append("(?)")
                    continue
            elif frame is not None and frame[1]:
                if text == "," and frame[2] == 1:
                    frame[2] = 0
                elif not (text in "+-" and frame[2] == 0):
                    frame[2] = -1
        if frame is not None and kind in ("qid", "bid", "word"):
            frame[2] = -1
        out.append(text)
    return "".join(out), tokens


def _text(sql: Any) -> str:
    if sql.__class__ is str:
        return sql
    if isinstance(sql, str):
        return str(sql)
    if isinstance(sql, (bytes, bytearray, memoryview)):
        return bytes(sql).decode("utf-8", "replace")
    return str(sql)


def sanitize_sql(sql: Any, *, system: str = "", max_length: int | None = None) -> str:
    """The query text with every literal replaced by ``?``; safe to record.

    - quoted strings (``'it''s'``, ``E'\\n'``, ``N'..'``, ``X'ff'``, ``B'01'``,
      ``U&'..'``), PostgreSQL dollar-quoted strings (``$$..$$``, ``$fn$..$fn$``) and
      numbers (``42``, ``-1.5e3`` → ``-?``, ``0xff``) become ``?``; an unterminated
      string or quoted identifier is a literal to the end of the text;
    - placeholders (``%s``, ``%(name)s``, ``?``, ``$1``, ``:name``) are kept, as are
      ``TRUE``/``FALSE``/``NULL`` and every identifier (quoted ones keep their quotes);
    - ``IN (...)`` with only literals and placeholders in it becomes ``IN (?)``, so the
      text does not change with the length of the list;
    - comments are removed and every run of whitespace becomes one space (one line);
    - ``system`` picks the quoting rules: ``"mysql"``/``"mariadb"`` — backslash escapes
      in strings, ``"..."`` is a string, ``#`` comments; anything else standard SQL
      (``"..."`` is an identifier);
    - only the first ``max_length`` characters are read (default: ``[limits]
      value_length``), so the cost is bounded whatever the input.

    Never raises: on any failure the result is ``""`` (never the raw text)."""
    try:
        limit = _spandata._max_length if max_length is None else max(0, int(max_length))
        return _scan(_text(sql), system, limit)[0]
    except Exception:
        return ""


# -- the statement parser -----------------------------------------------------------------

# First words that are statements; anything else is no operation (so junk text never
# becomes a span name).
_OPERATIONS = frozenset(
    """SELECT INSERT UPDATE DELETE MERGE UPSERT REPLACE WITH VALUES TABLE CREATE ALTER DROP TRUNCATE
    RENAME COMMENT GRANT REVOKE BEGIN START COMMIT END ROLLBACK SAVEPOINT RELEASE ABORT SET RESET SHOW
    DESCRIBE DESC EXPLAIN ANALYZE ANALYSE VACUUM PRAGMA COPY CALL EXEC EXECUTE DO LOCK UNLOCK LISTEN
    NOTIFY UNLISTEN PREPARE DEALLOCATE DECLARE FETCH MOVE CLOSE REFRESH REINDEX CLUSTER CHECKPOINT
    DISCARD LOAD USE ATTACH DETACH OPTIMIZE KILL FLUSH HANDLER""".split()  # noqa: SIM905
)
_MAIN_STATEMENTS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "VALUES", "TABLE"})
_DDL = frozenset({"CREATE", "ALTER", "DROP"})
_DDL_MODIFIERS = frozenset(
    {"OR", "REPLACE", "TEMP", "TEMPORARY", "UNLOGGED", "GLOBAL", "LOCAL", "UNIQUE", "VIRTUAL", "RECURSIVE", "FOREIGN"}
)
_DDL_TABLE_OBJECTS = frozenset({"TABLE", "VIEW", "INDEX", "MATERIALIZED"})
_NAME_PREFIXES = frozenset(
    {"ONLY", "IF", "NOT", "EXISTS", "CONCURRENTLY", "LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "QUICK", "IGNORE"}
)
_MAX_NAME = 128


def _word(tokens: list[Token], index: int) -> str:
    """The token at ``index`` upper-cased when it is a bare word, else ``""``."""
    if index < len(tokens):
        kind, text = tokens[index]
        if kind == _WORD:
            return text.upper()
    return ""


def _name(tokens: list[Token], index: int) -> str | None:
    """The (dotted) object name that starts at ``index``: ``public.auth_user``."""
    parts: list[str] = []
    while index < len(tokens):
        kind, text = tokens[index]
        if kind not in (_WORD, _QUOTED) or not text:
            break
        parts.append(text)
        if index + 2 < len(tokens) and tokens[index + 1] == (_PUNCT, "."):
            index += 2
            continue
        break
    name = ".".join(parts)
    return name[:_MAX_NAME] if name else None


def _name_after(tokens: list[Token], index: int, skip: frozenset[str] = _NAME_PREFIXES) -> str | None:
    while _word(tokens, index) in skip:
        index += 1
    return _name(tokens, index)


def _find_top_level(tokens: list[Token], start: int, words: frozenset[str]) -> int:
    """The index of the first of ``words`` at the parenthesis depth of ``start``, or -1."""
    depth = 0
    for index in range(start, len(tokens)):
        kind, text = tokens[index]
        if kind == _PUNCT:
            if text == "(":
                depth += 1
            elif text == ")":
                depth -= 1
                if depth < 0:
                    return -1
            elif text == ";" and depth == 0:
                return -1
        elif kind == _WORD and depth == 0 and text.upper() in words:
            return index
    return -1


_FROM = frozenset({"FROM"})
_INTO = frozenset({"INTO"})
_ON = frozenset({"ON"})


def _parse(tokens: list[Token]) -> tuple[str | None, str | None]:
    index = 0
    while index < len(tokens) and tokens[index] == (_PUNCT, "("):
        index += 1  # (SELECT ...) UNION (SELECT ...)
    first = _word(tokens, index)
    if first not in _OPERATIONS:
        return None, None
    if first == "WITH":
        main = _find_top_level(tokens, index + 1, _MAIN_STATEMENTS)
        if main < 0:
            return "WITH", None
        index, first = main, _word(tokens, main)
    after = index + 1
    if first == "SELECT":
        found = _find_top_level(tokens, after, _FROM)
        return first, (_name_after(tokens, found + 1) if found >= 0 else None)
    if first in ("INSERT", "REPLACE", "UPSERT", "MERGE"):
        found = _find_top_level(tokens, after, _INTO)
        return first, (_name_after(tokens, found + 1) if found >= 0 else None)
    if first == "UPDATE":
        while _word(tokens, after) in ("OR", "ROLLBACK", "ABORT", "REPLACE", "FAIL", "IGNORE", "LOW_PRIORITY", "ONLY"):
            after += 1
        return first, _name(tokens, after)
    if first == "DELETE":
        found = _find_top_level(tokens, after, _FROM)
        return first, (_name_after(tokens, found + 1) if found >= 0 else None)
    if first == "TABLE":  # TABLE t: SELECT * FROM t
        return "SELECT", _name(tokens, after)
    if first == "TRUNCATE":
        if _word(tokens, after) == "TABLE":
            after += 1
        return first, _name_after(tokens, after)
    if first in _DDL:
        while _word(tokens, after) in _DDL_MODIFIERS:
            after += 1
        kind = _word(tokens, after)
        if not kind:
            return first, None
        if kind == "MATERIALIZED" and _word(tokens, after + 1) == "VIEW":
            kind, after = "MATERIALIZED VIEW", after + 1
        operation = f"{first} {kind}"
        if kind == "INDEX":
            found = _find_top_level(tokens, after + 1, _ON)
            return operation, (_name_after(tokens, found + 1) if found >= 0 else None)
        if kind in _DDL_TABLE_OBJECTS or kind == "MATERIALIZED VIEW":
            return operation, _name_after(tokens, after + 1)
        return operation, None
    if first == "RELEASE":
        return "RELEASE SAVEPOINT", None
    if first == "ROLLBACK":
        rest = {_word(tokens, i) for i in range(after, min(after + 3, len(tokens)))}
        return ("ROLLBACK TO SAVEPOINT" if "TO" in rest else "ROLLBACK"), None
    if first == "START":
        return "START TRANSACTION", None
    return first, None


def sql_operation_and_target(sql: Any, *, system: str = "") -> tuple[str | None, str | None]:
    """``(operation, table)`` of a statement: ``("SELECT", "auth_user")``,
    ``("INSERT", "public.orders")``, ``("CREATE TABLE", "t")``, ``("CREATE INDEX", <the
    indexed table>)``, ``("SAVEPOINT", None)``, ``(None, None)`` when the text does not
    start with a statement. ``WITH ...`` is the statement after its common table
    expressions (``WITH x AS (...) SELECT ... FROM y`` → ``("SELECT", "y")``). The table
    is the first one named (``FROM a JOIN b`` → ``a``), without its quotes; a
    subquery in its place gives no table. Never raises."""
    try:
        return _parse(_scan(_text(sql), system, _spandata._max_length)[1])
    except Exception:
        return None, None


# -- db.system ------------------------------------------------------------------------------

_SYSTEMS = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "psycopg": "postgresql",
    "psycopg2": "postgresql",
    "asyncpg": "postgresql",
    "pg8000": "postgresql",
    "sqlite": "sqlite",
    "sqlite3": "sqlite",
    "pysqlite": "sqlite",
    "aiosqlite": "sqlite",
    "mysql": "mysql",
    "mariadb": "mariadb",
    "oracle": "oracle",
    "mssql": "mssql",
    "microsoft": "mssql",
    "sqlserver": "mssql",
    "sql_server": "mssql",
    "cockroachdb": "cockroachdb",
    "redshift": "redshift",
    "snowflake": "snowflake",
    "db2": "db2",
    "ibm_db_sa": "db2",
    "firebird": "firebird",
    "clickhouse": "clickhouse",
    "duckdb": "duckdb",
    "trino": "trino",
    "h2": "h2",
}


def db_system(name: Any) -> str:
    """The OpenTelemetry ``db.system`` value for a backend, dialect or driver name
    (Django's ``connection.vendor``, SQLAlchemy's ``dialect.name``): ``postgresql``,
    ``sqlite``, ``mysql``, ``mariadb``, ``oracle``, ``mssql``…; ``other_sql`` when
    unknown."""
    try:
        return _SYSTEMS.get(str(name).strip().lower(), "other_sql")
    except Exception:
        return "other_sql"


# -- the span -------------------------------------------------------------------------------

MAX_STATEMENTS = 1024  # cached statements per DatabaseInfo; cleared when full
MAX_CACHED_LENGTH = 16384  # longer statements are sanitized every time, never cached
_UNCACHED_OPERATIONS = frozenset({"SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT"})  # unique names
Statement = tuple[str, dict[str, Any]]  # (span name, attributes)


class DatabaseInfo:
    """The database a connection (a Django alias, a SQLAlchemy engine) talks to, and how
    its queries are traced.

    ``system``: ``db.system`` (passed through :func:`db_system`); ``namespace``:
    ``db.namespace``, the database name; ``server_address``/``server_port``: where it
    listens (``None``/``0`` for a file or a socket: not recorded); ``module``: the
    instrumentation (``django``, ``sqlalchemy``), recorded as ``module``; ``service``:
    the ``service`` attribute, when not empty; ``root_spans``: a query with no current
    span begins a trace of its own (by default it is not traced).

    Keeps, per statement text, the span name and attributes made from it (at most
    :data:`MAX_STATEMENTS`, then it starts again), so sanitizing and parsing cost once
    per distinct statement, not once per query. Shared between threads."""

    __slots__ = (
        "_base",
        "_statements",
        "module",
        "namespace",
        "root_spans",
        "server_address",
        "server_port",
        "service",
        "system",
    )

    def __init__(
        self,
        system: str,
        *,
        namespace: Any = None,
        server_address: Any = None,
        server_port: Any = None,
        module: str = "",
        service: str = "",
        root_spans: bool = False,
    ) -> None:
        self.system = db_system(system)
        self.namespace = str(namespace) if namespace not in (None, "") else ""
        self.server_address = str(server_address) if server_address not in (None, "") else ""
        try:
            port = int(server_port) if server_port not in (None, "") else 0
        except (TypeError, ValueError):
            port = 0
        self.server_port = port if 0 < port < 65536 else 0
        self.module = str(module or "")
        self.service = str(service or "")
        self.root_spans = bool(root_spans)
        base: dict[str, Any] = {"kind": "db"}
        if self.module:
            base["module"] = self.module
        if self.service:
            base["service"] = self.service
        base["db.system"] = self.system
        if self.namespace:
            base["db.namespace"] = self.namespace
        if self.server_address:
            base["server.address"] = self.server_address
        if self.server_port:
            base["server.port"] = self.server_port
        self._base = base
        self._statements: dict[str, Statement] = {}

    def statement(self, sql: Any) -> Statement:
        """The span name and attributes of a query with this text (cached)."""
        text = _text(sql)
        cached = self._statements.get(text)
        if cached is not None:
            return cached
        sanitized, tokens = _scan(text, self.system, _spandata._max_length)
        operation, table = _parse(tokens)
        attrs = self._base.copy()
        if operation:
            attrs["db.operation.name"] = operation
        if table:
            attrs["db.collection.name"] = table
        attrs["target"] = table or operation or self.system
        if sanitized:
            attrs["db.query.text"] = sanitized
        name = (f"db:{operation} {table}" if table else f"db:{operation}") if operation else f"db:{self.system}"
        entry = (name, attrs)
        if len(text) <= MAX_CACHED_LENGTH and operation not in _UNCACHED_OPERATIONS:
            statements = self._statements
            if len(statements) >= MAX_STATEMENTS:
                statements.clear()
            statements[text] = entry
        return entry

    def __repr__(self) -> str:
        where = f"{self.server_address}:{self.server_port}" if self.server_address else ""
        return f"DatabaseInfo({self.system!r}, namespace={self.namespace!r}{', ' + where if where else ''})"


def begin_query_span(db: DatabaseInfo, sql: Any, *, batch_size: int | None = None) -> AnySpan | None:
    """Begin the ``client`` span of one query (it does not become the current span: a
    query has no children), or return ``None`` when it is not traced: no current span
    and ``db.root_spans`` off. End it with :func:`end_query_span` when the driver has
    returned. ``batch_size``: the number of parameter sets of an ``executemany``
    (``db.operation.batch.size``, recorded from 2). Never raises (``None`` instead)."""
    try:
        hook = _tracer._hook
        parent = _current.get() if hook is _tracer._tracer else hook.current_span()
        if parent is None and not db.root_spans:
            return None
        name, attrs = db.statement(sql)
        span: AnySpan = hook.start_span(name, attrs, kind=CLIENT, parent=parent)
        if batch_size is not None and batch_size > 1:
            span.set_attribute("db.operation.batch.size", batch_size)
        return span
    except Exception:
        return None


def end_query_span(span: AnySpan | None, exc: BaseException | None = None) -> None:
    """End a query span; with ``exc``, as an error: ``error.type`` (the exception's
    class), ``db.response.status_code`` (the SQLSTATE or the driver's error code when
    it has one) and a status message of the class name and the first line of the
    message with its literals replaced by ``?`` (database messages quote the values
    that failed: ``Duplicate entry 'x' for key ...``; the lines after the first, such
    as PostgreSQL's ``DETAIL: Key (email)=(...)``, are not recorded). Never raises."""
    if span is None:
        return
    try:
        if exc is not None:
            span.set_attribute("error.type", type(exc).__qualname__)
            code = _error_code(exc)
            if code:
                span.set_attribute("db.response.status_code", code)
            span.set_status("error", _error_message(exc))
        span.end()
    except Exception:
        try:
            span.end()
        except Exception:
            pass


def _error_code(exc: BaseException) -> str:
    """SQLSTATE (psycopg ``sqlstate``, psycopg2 ``pgcode``) or SQLite's error name
    (``SQLITE_CONSTRAINT_UNIQUE``), looked for on the exception and on what it wraps
    (Django and SQLAlchemy wrap the driver's exception)."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 4:
        for attribute in ("sqlstate", "pgcode", "sqlite_errorname"):
            value = getattr(current, attribute, None)
            if isinstance(value, str) and value:
                return value
        orig = getattr(current, "orig", None)  # SQLAlchemy's DBAPIError
        current = orig if isinstance(orig, BaseException) else current.__cause__
        seen += 1
    return ""


def _error_message(exc: BaseException) -> str:
    name = type(exc).__name__
    try:
        text = str(exc)
    except Exception:
        return name
    first = text.strip().split("\n", 1)[0][:1024]
    clean = sanitize_sql(first)
    return f"{name}: {clean}" if clean else name
