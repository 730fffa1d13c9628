"""Build the wheel and the sdist of every infratrace distribution, and check them.

    python scripts/build_dists.py                 # into ./dist (emptied first)
    python scripts/build_dists.py --out DIR       # into DIR (emptied first)

The core (``infratrace``) and the adapters under ``integrations/`` are built with
``python -m build`` (the ``build`` package): the sdist first, then the wheel from that
sdist, so a wheel is only made if the sdist builds. All seven share one build
environment, a throwaway venv holding their ``[build-system] requires`` (one install
instead of fourteen); ``--isolated`` gives each build its own, as pip does. Then
``twine check --strict`` reads every file's metadata and long description. Last, the
wheels are checked: every one is tagged ``py3-none-any`` (there is no native code, so
the sdists build without a compiler), and the core wheel carries its package data
(``py.typed``, the viewer's static files). Exit status 0 when all of it holds;
otherwise 1, with what is wrong on stderr.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import venv
import zipfile
from collections.abc import Sequence
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
# Source folder of each distribution, by its name on the package index.
DISTRIBUTIONS = {
    "infratrace": ROOT,
    "infratrace-asgi": ROOT / "integrations" / "asgi",
    "infratrace-django": ROOT / "integrations" / "django",
    "infratrace-flask": ROOT / "integrations" / "flask",
    "infratrace-celery": ROOT / "integrations" / "celery",
    "infratrace-http": ROOT / "integrations" / "http",
    "infratrace-sqlalchemy": ROOT / "integrations" / "sqlalchemy",
}
CORE_PACKAGE_DATA = ("infratrace/py.typed", "infratrace/viewer/static/")
VIEWER_STATIC = ROOT / "infratrace" / "viewer" / "static"


class BuildError(Exception):
    """A build or a check failed; the message says which and why."""


def wheel_name_prefix(distribution: str) -> str:
    """How a distribution's wheel file name begins (``infratrace_django-``)."""
    return distribution.replace("-", "_") + "-"


def build_requirements(distributions: dict[str, Path] = DISTRIBUTIONS) -> list[str]:
    """The ``[build-system] requires`` of every distribution, each listed once."""
    found: list[str] = []
    for source in distributions.values():
        with (source / "pyproject.toml").open("rb") as file:
            for requirement in tomllib.load(file)["build-system"]["requires"]:
                if requirement not in found:
                    found.append(requirement)
    return found


def _run(argv: Sequence[str], what: str) -> None:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildError(f"{what} failed (exit {result.returncode}):\n{result.stdout[-4000:]}{result.stderr[-4000:]}")


def build_environment(where: Path, distributions: dict[str, Path] = DISTRIBUTIONS) -> Path:
    """A venv in ``where`` with ``build`` and every distribution's build requirements;
    returns its Python."""
    venv.EnvBuilder(with_pip=True).create(where)
    python = where / "bin" / "python"
    _run(
        [str(python), "-m", "pip", "install", "-q", "build", *build_requirements(distributions)],
        "installing the build requirements",
    )
    return python


def build(out: Path, distributions: dict[str, Path] = DISTRIBUTIONS, isolated: bool = False) -> list[Path]:
    """Empty ``out``, build an sdist and then, from it, a wheel of each distribution into
    it, and return the files made."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="infratrace-build-") as scratch:
        if isolated:
            argv = [sys.executable, "-m", "build"]
        else:
            print(f"build_dists: one build environment with {', '.join(build_requirements(distributions))}", flush=True)
            argv = [str(build_environment(Path(scratch) / "venv", distributions)), "-m", "build", "--no-isolation"]
        for name, source in distributions.items():
            print(f"build_dists: building {name} from {source}", flush=True)
            _run([*argv, "--sdist", "--wheel", "--outdir", str(out), str(source)], f"building {name}")
    return sorted(out.iterdir())


def twine_check(files: Sequence[Path]) -> None:
    """``twine check --strict``: the metadata and the README of every file render."""
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    print(result.stdout, end="", flush=True)
    if result.returncode != 0:
        raise BuildError(f"twine check failed:\n{result.stdout}{result.stderr}")


def check_files(files: Sequence[Path], distributions: dict[str, Path] = DISTRIBUTIONS) -> list[str]:
    """What is wrong with the built files: a missing wheel or sdist, a wheel not tagged
    ``py3-none-any``, core package data missing from the core wheel."""
    problems: list[str] = []
    wheels = [f for f in files if f.suffix == ".whl"]
    sdists = [f for f in files if f.name.endswith(".tar.gz")]
    for name in distributions:
        prefix = wheel_name_prefix(name)
        own_wheels = [w for w in wheels if w.name.startswith(prefix) and w.name[len(prefix) : len(prefix) + 1].isdigit()]
        own_sdists = [s for s in sdists if s.name.startswith(prefix) and s.name[len(prefix) : len(prefix) + 1].isdigit()]
        if len(own_wheels) != 1:
            problems.append(f"{name}: expected one wheel, found {[w.name for w in own_wheels]}")
        if len(own_sdists) != 1:
            problems.append(f"{name}: expected one sdist, found {[s.name for s in own_sdists]}")
    for wheel in wheels:
        if not wheel.name.endswith("-py3-none-any.whl"):
            problems.append(f"{wheel.name}: not tagged py3-none-any")
    core = [w for w in wheels if w.name.startswith(wheel_name_prefix("infratrace")) and w.name[11:12].isdigit()]
    if core:
        with zipfile.ZipFile(core[0]) as archive:
            names = set(archive.namelist())
        if "infratrace/py.typed" not in names:
            problems.append(f"{core[0].name}: infratrace/py.typed missing")
        static = sorted(p.name for p in VIEWER_STATIC.iterdir() if p.is_file())
        missing = [s for s in static if f"infratrace/viewer/static/{s}" not in names]
        if not static or missing:
            problems.append(f"{core[0].name}: viewer static files missing: {missing or 'the source folder is empty'}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build and check the wheels and sdists of every infratrace distribution.")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder, emptied first (default: ./dist)")
    parser.add_argument("--isolated", action="store_true", help="give each build its own environment, as pip does")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    try:
        files = build(out, isolated=args.isolated)
        twine_check(files)
    except BuildError as exc:
        print(f"build_dists: {exc}", file=sys.stderr)
        return 1
    problems = check_files(files)
    for problem in problems:
        print(f"build_dists: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"build_dists: {len(files)} files in {out}, all py3-none-any, twine check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
