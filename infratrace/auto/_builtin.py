"""The core's own instrumentation: log correlation (``infratrace.logging``)."""

from __future__ import annotations

from types import ModuleType

import infratrace.logging

__all__ = ["log_correlation"]


def log_correlation(module: ModuleType) -> None:
    """``trace_id``, ``span_id`` and ``trace_sampled`` in every log record, once
    ``logging`` is imported (only with ``$INFRATRACE_LOG_CORRELATION=true``)."""
    if not infratrace.logging.is_instrumented():
        infratrace.logging.instrument()
