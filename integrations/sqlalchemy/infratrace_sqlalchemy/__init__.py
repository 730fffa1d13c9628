"""infratrace for SQLAlchemy: a ``db:<operation> <table>`` client span for every
statement an engine sends to its database, a child of the current span.

    import infratrace_sqlalchemy
    infratrace_sqlalchemy.instrument(engine)        # one engine (or an AsyncEngine)
    infratrace_sqlalchemy.instrument()              # every engine, present and future
    infratrace_sqlalchemy.uninstrument()            # every listener removed

Built on SQLAlchemy's engine events (``before_cursor_execute``,
``after_cursor_execute``, ``handle_error``): nothing is patched. See docs/databases.md."""

from __future__ import annotations

from ._listeners import instrument, instrumented, uninstrument

__version__ = "0.1.0"

__all__ = ["__version__", "instrument", "instrumented", "uninstrument"]
