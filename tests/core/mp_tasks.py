"""Work for multiprocessing children in the tests (importable, so spawn can run it)."""

from __future__ import annotations

import infratrace

SPANS_PER_TASK = 50


def traced_task(index: int) -> int:
    with infratrace.begin("task", {"index": index}):
        for i in range(SPANS_PER_TASK - 1):
            infratrace.trace("step", {"i": i})
    return index


def traced_process(count: int) -> None:
    for index in range(count):
        traced_task(index)
