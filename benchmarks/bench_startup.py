"""What ``infratrace-run`` adds to a process's start, in milliseconds of wall time.

    .venv/bin/python benchmarks/bench_startup.py [--rounds 41]

Each scenario starts a fresh interpreter (``subprocess.run``, output discarded) and is
timed from spawn to exit; rounds interleave the scenarios, so drift in machine load
hits them all, and the median over rounds is reported with the added cost against the
same command without tracing:

- ``python -c pass`` and ``python -c "import flask"``, plain;
- the same under the bootstrap alone: ``PYTHONPATH`` and ``$INFRATRACE_AUTO_REGISTRY``
  as ``infratrace-run`` leaves them — what every worker, forked-and-exec'd or spawned
  child pays (``import flask`` then also imports infratrace and the Flask adapter:
  the instrumentation runs);
- ``import flask`` with an app made: ``InfraTrace(app)`` configures tracing (reads
  ``./infratrace.toml``, starts the file connection);
- the same commands through ``infratrace-run`` itself (``python -m infratrace.auto.run``):
  the launcher reads the entry points and checks the configuration once, then execs;
- ``opentelemetry-instrument`` on the same commands, when it is installed, for
  comparison (its distro and every installed instrumentor are loaded at start-up).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from infratrace.auto.run import prepare_environment

PY = sys.executable
COMMANDS = {
    "pass": [PY, "-c", "pass"],
    "import flask": [PY, "-c", "import flask"],
    "flask app": [PY, "-c", "import flask; flask.Flask('bench')"],
}


def scenarios(workdir: Path) -> dict[str, tuple[list[str], dict[str, str], str]]:
    """name -> (argv, environment, the plain scenario it is compared with)."""
    plain = {key: value for key, value in os.environ.items() if not key.startswith(("INFRATRACE_", "OTEL_"))}
    plain.pop("PYTHONPATH", None)
    boot = prepare_environment(plain)
    run = [PY, "-m", "infratrace.auto.run"]
    found: dict[str, tuple[list[str], dict[str, str], str]] = {}
    for label, argv in COMMANDS.items():
        found[f"{label}: plain"] = (argv, plain, f"{label}: plain")
        found[f"{label}: bootstrap"] = (argv, boot, f"{label}: plain")
        found[f"{label}: infratrace-run"] = (run + argv, plain, f"{label}: plain")
    otel = shutil.which("opentelemetry-instrument", path=str(Path(PY).parent))
    if otel is not None:
        otel_env = {**plain, "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
        for label in ("pass", "import flask"):
            found[f"{label}: opentelemetry-instrument"] = ([otel, *COMMANDS[label]], otel_env, f"{label}: plain")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=41)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        output = workdir / "traces.jsonl"
        (workdir / "infratrace.toml").write_text(f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{output}"\n')
        table = scenarios(workdir)
        times: dict[str, list[float]] = {name: [] for name in table}
        for _ in range(2):  # warm the file cache
            for argv, env, _plain in table.values():
                subprocess.run(argv, env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        for _ in range(args.rounds):
            for name, (argv, env, _plain) in table.items():
                start = time.perf_counter()
                subprocess.run(argv, env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
                times[name].append((time.perf_counter() - start) * 1000)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"{args.rounds} rounds, median ms from spawn to exit (Python {sys.version.split()[0]})")
    print(f"{'scenario':44} {'median':>8} {'added':>8}")
    for name, (_argv, _env, plain) in table.items():
        added = "" if name == plain else f"{medians[name] - medians[plain]:+8.1f}"
        print(f"{name:44} {medians[name]:8.1f} {added:>8}")


if __name__ == "__main__":
    main()
