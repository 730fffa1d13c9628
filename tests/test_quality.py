"""The house rules, checked with every test run: ruff clean and formatted, mypy --strict clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = [
    "infratrace",
    "integrations/asgi/infratrace_asgi",
    "integrations/django/infratrace_django",
    "integrations/flask/infratrace_flask",
    "integrations/celery/infratrace_celery",
    "integrations/http/infratrace_http",
    "integrations/sqlalchemy/infratrace_sqlalchemy",
]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_is_clean():
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_applied():
    result = _run("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean():
    result = _run("mypy", "--strict", *PACKAGES)
    assert result.returncode == 0, result.stdout + result.stderr
