"""``infratrace-run COMMAND [ARGS...]``: run a command with every Python process it
starts instrumented, with no change to the program (see docs/auto-instrumentation.md).

It reads the instrumentations installed (entry points of the
``infratrace.instrumentations`` group) once, checks the configuration the processes
will find (``$INFRATRACE_CONFIG``, else ``./infratrace.toml``, and the ``INFRATRACE_*``
and ``OTEL_*`` variables), puts the bootstrap folder first on ``PYTHONPATH`` and
replaces itself with the command."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["BOOTSTRAP_DIR", "main", "prepare_environment"]

BOOTSTRAP_DIR = str(Path(__file__).resolve().parent / "bootstrap")
USAGE = """\
usage: infratrace-run [--] COMMAND [ARGS...]

Runs COMMAND with tracing: every Python process it starts (forked and spawned children
too) instruments Django, Flask, Starlette/FastAPI, Celery, httpx, requests, urllib3,
urllib and SQLAlchemy when the program imports them.

  infratrace-run gunicorn -w 2 myproject.wsgi
  infratrace-run uvicorn --workers 2 app:app
  infratrace-run celery -A proj worker
  infratrace-run python manage.py runserver

Configuration: $INFRATRACE_CONFIG, else ./infratrace.toml, else spans go to the console;
INFRATRACE_* and OTEL_* variables apply (docs/configuration.md).
  INFRATRACE_DISABLED_INSTRUMENTATIONS=django,httpx   leave these out
  INFRATRACE_LOG_CORRELATION=true                     trace_id/span_id in log records
  INFRATRACE_DISABLED=true                            run COMMAND untouched
"""


def prepare_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The command's environment: the bootstrap first on ``PYTHONPATH`` (once) and the
    table of instrumentations in ``$INFRATRACE_AUTO_REGISTRY``. Unknown names in
    ``$INFRATRACE_DISABLED_INSTRUMENTATIONS`` are reported here, once for the whole
    command."""
    from ._registry import encode, load_registry, report_unknown
    from .bootstrap.sitecustomize import REGISTRY_ENV

    env = dict(environ)
    entries = load_registry(env)
    report_unknown(entries, env)
    env[REGISTRY_ENV] = encode(entries)
    paths = [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry and entry != BOOTSTRAP_DIR]
    env["PYTHONPATH"] = os.pathsep.join([BOOTSTRAP_DIR, *paths])
    return env


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "--":
        args = args[1:]
    if not args or args[0] in ("-h", "--help"):
        (sys.stdout if args else sys.stderr).write(USAGE)
        return 0 if args else 2
    from .._config import load_config
    from .._environment import disabled_by_environment
    from .._errors import ConfigError

    env: dict[str, str] = dict(os.environ)
    if not disabled_by_environment():
        try:
            load_config(None)  # fail here, once, not in every worker
        except ConfigError as exc:
            print(f"infratrace-run: {exc}", file=sys.stderr)
            return 2
        env = prepare_environment(env)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(args[0], args, env)
    except OSError as exc:
        print(f"infratrace-run: cannot run {args[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    return 0  # not reached: exec replaces the process


if __name__ == "__main__":
    sys.exit(main())
