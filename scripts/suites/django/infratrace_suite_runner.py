"""A Django test runner that writes each test's outcome as a JSON line to
``$INFRATRACE_SUITE_RESULTS`` (as the outcomes arrive, so a run that is killed keeps
what it had), and stops a test that runs longer than ``$INFRATRACE_SUITE_TIMEOUT``
seconds with a ``TimeoutError`` (SIGALRM, in the process that runs it: the parallel
workers too)."""

from __future__ import annotations

import json
import os
import signal
import threading
import unittest
from types import FrameType
from typing import Any

from django.test.runner import DiscoverRunner, ParallelTestSuite, RemoteTestResult, RemoteTestRunner

_SEVERITY = {"passed": 0, "skipped": 0, "xfailed": 0, "xpassed": 1, "failed": 2, "error": 3}


def _timeout() -> float:
    return float(os.environ.get("INFRATRACE_SUITE_TIMEOUT", "0") or 0)


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise TimeoutError(f"the test ran longer than {_timeout():g} s")


def _arm() -> None:
    if _timeout() > 0 and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, _timeout())


def _disarm() -> None:
    if _timeout() > 0 and threading.current_thread() is threading.main_thread():
        signal.setitimer(signal.ITIMER_REAL, 0)


class RecordingResult(unittest.TextTestResult):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._outcomes: dict[str, tuple[str, str]] = {}
        self._path = os.environ["INFRATRACE_SUITE_RESULTS"]

    def _record(self, test: Any, outcome: str, err: Any = None, detail: str = "") -> None:
        test_id = test.id()
        if err is not None:
            try:
                detail = self._exc_info_to_string(err, test)
            except Exception:
                detail = repr(err[1]) if isinstance(err, tuple) and len(err) > 1 else repr(err)
        previous = self._outcomes.get(test_id)
        if previous is not None and _SEVERITY[previous[0]] >= _SEVERITY[outcome]:
            return
        self._outcomes[test_id] = (outcome, detail)
        with open(self._path, "a") as out:
            out.write(json.dumps({"id": test_id, "outcome": outcome, "detail": detail[-4000:]}) + "\n")

    def startTest(self, test: Any) -> None:
        super().startTest(test)
        _arm()

    def stopTest(self, test: Any) -> None:
        _disarm()
        super().stopTest(test)

    def addSuccess(self, test: Any) -> None:
        super().addSuccess(test)
        self._record(test, "passed")

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self._record(test, "failed", err)

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        self._record(test, "error", err)

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        self._record(test, "skipped", detail=reason)

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._record(test, "xfailed")

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)
        self._record(test, "xpassed")

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._record(test, "failed" if failed else "error", err)


class TimedRemoteResult(RemoteTestResult):  # type: ignore[misc]
    def startTest(self, test: Any) -> None:
        super().startTest(test)
        _arm()

    def stopTest(self, test: Any) -> None:
        _disarm()
        super().stopTest(test)


class TimedRemoteRunner(RemoteTestRunner):  # type: ignore[misc]
    resultclass = TimedRemoteResult


class TimedParallelTestSuite(ParallelTestSuite):  # type: ignore[misc]
    runner_class = TimedRemoteRunner


class RecordingRunner(DiscoverRunner):  # type: ignore[misc]
    parallel_test_suite = TimedParallelTestSuite

    def get_resultclass(self) -> type[unittest.TextTestResult]:
        return RecordingResult
