"""Instrumentation with no code change: ``infratrace-run COMMAND...``.

- :mod:`infratrace.auto.run`: the command (``infratrace-run``);
- ``infratrace/auto/bootstrap/sitecustomize.py``: what runs in every Python process it
  starts, importing only ``os`` and ``sys`` until a watched module is imported;
- :mod:`infratrace.auto._registry`: the instrumentations installed — entry points of
  the group ``infratrace.instrumentations``, declared by each adapter distribution::

      [project.entry-points."infratrace.instrumentations"]
      flask = "infratrace_flask._auto:instrument"

  The name is the module whose import triggers the instrumentation, the value a
  callable taking that module once it has been executed. The callable must not raise
  on a program it cannot instrument (the bootstrap reports an exception on stderr and
  goes on) and must not import anything the program does not.

See docs/auto-instrumentation.md."""

from __future__ import annotations

GROUP = "infratrace.instrumentations"

__all__ = ["GROUP"]
