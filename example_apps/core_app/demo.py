"""Demo step: the core API alone, in a child process (no web framework)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any


def run(ctx: Any) -> None:
    env = {**ctx.env, "INFRATRACE_SERVICE": "core-demo"}
    subprocess.run([sys.executable, "-m", "example_apps.core_app.app"], cwd=ctx.root, env=env, check=True)
