"""scripts/framework_suites.py reads pytest's JUnit XML and the Django runner's JSON
lines into outcomes and finds exactly the tests whose outcome changed (the suites
themselves run on demand, not here)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent

SUITE = """
import os
import pytest

def test_always():
    pass

def test_flips():
    assert not os.environ.get("FLIP")

@pytest.mark.skip(reason="never")
def test_skipped():
    pass

@pytest.mark.xfail(strict=True)
def test_expected_failure():
    assert False

@pytest.fixture
def broken():
    raise RuntimeError("fixture")

def test_errors(broken):
    pass

@pytest.mark.parametrize("n", [1, 2])
def test_each(n):
    assert n != 2 or not os.environ.get("FLIP")
"""


@pytest.fixture(scope="module")
def suites() -> ModuleType:
    spec = importlib.util.spec_from_file_location("framework_suites", ROOT / "scripts" / "framework_suites.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["framework_suites"] = module
    spec.loader.exec_module(module)
    return module


def run_pytest(folder: Path, junit: Path, flip: bool) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", **({"FLIP": "1"} if flip else {})}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", "test_tiny.py"]
    subprocess.run(command, cwd=folder, env=env, capture_output=True, timeout=120)


def test_junit_outcomes_and_the_changed_tests(tmp_path: Path, suites: ModuleType) -> None:
    (tmp_path / "test_tiny.py").write_text(SUITE)
    run_pytest(tmp_path, tmp_path / "plain.xml", flip=False)
    run_pytest(tmp_path, tmp_path / "traced.xml", flip=True)
    plain = suites.read_junit(tmp_path / "plain.xml")
    assert {key.rpartition("::")[2]: outcome for key, (outcome, _) in plain.items()} == {
        "test_always": "passed",
        "test_flips": "passed",
        "test_skipped": "skipped",
        "test_expected_failure": "xfailed",
        "test_errors": "error",
        "test_each[1]": "passed",
        "test_each[2]": "passed",
    }
    traced = suites.read_junit(tmp_path / "traced.xml")

    def run(label: str, outcomes: dict[str, tuple[str, str]]) -> object:
        return suites.Run(label, outcomes, 0, 0.0, False, tmp_path / "log")

    changed, flaky = suites.compare([run("plain-1", plain), run("plain-2", plain)], run("traced", traced))
    assert [(entry["test"].rpartition("::")[2], entry["plain"], entry["traced"]) for entry in changed] == [
        ("test_each[2]", "passed / passed", "failed"),
        ("test_flips", "passed / passed", "failed"),
    ]
    assert "AssertionError" in changed[1]["traced_detail"] and not flaky
    # a test that differs between the plain runs is flaky, not a change
    changed, flaky = suites.compare([run("plain-1", plain), run("plain-2", traced)], run("traced", traced))
    assert not changed and len(flaky) == 2


def test_django_results_keep_the_worst_outcome_of_a_test(tmp_path: Path, suites: ModuleType) -> None:
    results = tmp_path / "results.jsonl"
    lines = [
        {"id": "app.tests.T.test_a", "outcome": "passed"},
        {"id": "app.tests.T.test_b", "outcome": "failed", "detail": "subtest 1"},
        {"id": "app.tests.T.test_b", "outcome": "error", "detail": "subtest 2"},
        {"id": "app.tests.T.test_b", "outcome": "failed", "detail": "subtest 3"},
    ]
    results.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert suites.read_django_results(results) == {
        "app.tests.T.test_a": ("passed", ""),
        "app.tests.T.test_b": ("error", "subtest 2"),
    }
