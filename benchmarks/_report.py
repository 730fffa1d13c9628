"""What a benchmark's report says about the run: package versions and the commit."""

from __future__ import annotations

import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def package_version(name: str) -> str:
    """``"name 1.2.3"``, or ``"name (not installed)"``."""
    try:
        return f"{name} {version(name)}"
    except PackageNotFoundError:
        return f"{name} (not installed)"


def git_head(root: Path) -> str:
    """The short hash of the checkout's HEAD (``""`` outside a git checkout)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=False)
    return head.stdout.strip()
