"""Run the frameworks' own test suites with and without infratrace, and report every test
whose outcome changed.

For the Starlette, Flask, Django and Celery installed in this virtualenv (their exact
versions), each project's source distribution is fetched from the configured package
index into ``.cache/framework-suites/`` (``pip download --no-deps --no-binary :all:``;
the four sdists carry their tests), unpacked without the package's own source (so the
tests import the installed package), the test requirements that are not installed
already are installed into a folder of that framework's own (``pip install --target``,
versions of packages the virtualenv has pinned to the virtualenv's, duplicates removed;
a requirement the index does not have is reported and left out), and the suite runs
twice — once plain, once with tracing injected into every app it makes
(``scripts/suites/inject``: a ``sitecustomize`` on ``PYTHONPATH``, infratrace writing
JSON lines with the file driver, so the whole pipeline runs) — and the outcomes are
compared test by test (pytest's JUnit XML; for Django's ``runtests.py``, the JSON lines
of a recording test runner, ``scripts/suites/django``).

    .venv/bin/python scripts/framework_suites.py                      # all four
    .venv/bin/python scripts/framework_suites.py flask django         # some of them
    .venv/bin/python scripts/framework_suites.py --plain-runs 2       # a second plain run:
                                                                      # tests that differ between
                                                                      # plain runs are not ours
    .venv/bin/python scripts/framework_suites.py django --database postgresql
    .venv/bin/python scripts/framework_suites.py django --all-signals  # no default deny list

Suites: Starlette's and Flask's whole ``tests``, Celery's ``t/unit/tasks`` and
``t/unit/app``, Django's ``runtests.py`` with the labels in :data:`DJANGO_LABELS`
(``--django-labels`` replaces them). Every test has a time limit (``--timeout``,
pytest-timeout or SIGALRM in Django's runner), every run one too (``--run-timeout``).
The report is printed and written to ``.cache/framework-suites/report.md`` and
``report.json``; the exit status is 1 when an outcome changed that the plain runs do not
explain, 2 when a suite could not be run.

Not part of the normal test run (it downloads and runs thousands of tests): run it on
demand, after changing an adapter."""

from __future__ import annotations

import argparse
import collections
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITES = Path(__file__).resolve().parent / "suites"
INJECT = SUITES / "inject"
DJANGO_HELPERS = SUITES / "django"
DEFAULT_CACHE = ROOT / ".cache" / "framework-suites"

# Request handling, middleware, signals, the ORM and transactions.
DJANGO_LABELS = (
    "asgi",
    "auth_tests",
    "backends",
    "basic",
    "conditional_processing",
    "context_processors",
    "csrf_tests",
    "decorators",
    "delete",
    "dispatch",
    "file_uploads",
    "generic_views",
    "get_or_create",
    "handlers",
    "httpwrappers",
    "logging_tests",
    "m2m_signals",
    "messages_tests",
    "middleware",
    "middleware_exceptions",
    "model_inheritance",
    "prefetch_related",
    "queries",
    "requests_tests",
    "responses",
    "select_for_update",
    "select_related",
    "servers",
    "sessions_tests",
    "settings_tests",
    "shortcuts",
    "signals",
    "signed_cookies_tests",
    "template_tests",
    "test_client",
    "test_client_regress",
    "test_utils",
    "transaction_hooks",
    "transactions",
    "update",
    "urlpatterns",
    "urlpatterns_reverse",
    "view_tests",
)

Outcome = tuple[str, str]  # (passed | failed | error | skipped | xfailed | xpassed, detail)
SEVERITY = {"passed": 0, "skipped": 0, "xfailed": 0, "xpassed": 1, "failed": 2, "error": 3}


@dataclass(frozen=True)
class Framework:
    name: str
    dist: str  # the distribution name on the package index
    package: str  # the folder of the package's own source in the sdist, left out
    runner: str  # "pytest" or "django"
    paths: tuple[str, ...]  # what pytest runs (relative to the sdist's root)
    requirements: tuple[str, ...]  # what the tests import beyond the framework
    # Versions the suite needs instead of the virtualenv's (its own lock file's)
    pins: tuple[str, ...] = ()


FRAMEWORKS = {
    fw.name: fw
    for fw in (
        Framework(
            "starlette",
            "starlette",
            "starlette",
            "pytest",
            ("tests",),
            ("trio", "python-multipart", "PyYAML", "itsdangerous", "jinja2", "httpx2[zstd]", "blockbuster", "sniffio"),
        ),
        Framework(
            "flask",
            "flask",
            "src",
            "pytest",
            ("tests",),
            ("asgiref", "greenlet", "python-dotenv"),
            # its tests use _pytest.monkeypatch.notset, gone in pytest 9.1; uv.lock has 9.0.2
            pins=("pytest==9.0.2",),
        ),
        Framework(
            "django",
            "django",
            "django",
            "django",
            (),
            (
                "tblib",
                "PyYAML",
                "jinja2",
                "argon2-cffi",
                "bcrypt",
                "Pillow",
                "asgiref",
                "sqlparse",
                "psycopg[binary]",
                "psycopg-pool",
            ),
        ),
        Framework(
            "celery",
            "celery",
            "celery",
            "pytest",
            ("t/unit/tasks", "t/unit/app"),
            (
                "pytest-celery",
                "pytest-subtests",
                "pytest-click",
                "pytest-order",
                "freezegun",
                "python-dateutil",
                "pydantic",
                "PyYAML",
                "cryptography",
            ),
        ),
    )
}


@dataclass
class Run:
    label: str  # plain-1, plain-2, traced
    outcomes: dict[str, Outcome]
    returncode: int | None
    seconds: float
    timed_out: bool
    log: Path
    spans: collections.Counter[str] = field(default_factory=collections.Counter)
    inject_errors: str = ""


@dataclass
class Result:
    framework: Framework
    version: str
    runs: list[Run]
    unavailable: list[str]
    changed: list[dict[str, str]]
    flaky: list[dict[str, str]]
    problem: str = ""


# -- preparing a suite -------------------------------------------------------------------


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def installed_version(dist: str) -> str:
    return importlib.metadata.version(dist)


def fetch_sdist(fw: Framework, version: str, cache: Path) -> Path:
    sdists = cache / "sdists"
    sdists.mkdir(parents=True, exist_ok=True)
    found = find_sdist(sdists, fw.dist, version)
    if found is None:
        say(f"{fw.name}: downloading the {fw.dist} {version} sdist")
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        command += ["--dest", str(sdists), f"{fw.dist}=={version}"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        found = find_sdist(sdists, fw.dist, version)
    if found is None:
        raise OSError(f"pip saved no {fw.dist}-{version}.tar.gz in {sdists}")
    return found


def find_sdist(sdists: Path, dist: str, version: str) -> Path | None:
    wanted = f"{dist}-{version}".lower().replace("_", "-")
    for candidate in sdists.glob("*.tar.gz"):
        if candidate.name[: -len(".tar.gz")].lower().replace("_", "-") == wanted:
            return candidate
    return None


def unpack(fw: Framework, sdist: Path, cache: Path) -> Path:
    """The sdist without the package's own source: the tests import the installed one."""
    with tarfile.open(sdist) as archive:
        top = archive.getmembers()[0].name.split("/")[0]
        target = cache / "src" / top
        if target.exists():
            return target
        skip = f"{top}/{fw.package}/"
        members = [m for m in archive.getmembers() if not (m.name + "/").startswith(skip)]
        partial = target.with_name(top + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        archive.extractall(partial, members=members, filter="data")
        (partial / top).rename(target)
        partial.rmdir()
    tests = [target / path for path in fw.paths] if fw.paths else [target / "tests" / "runtests.py"]
    missing = [str(path) for path in tests if not path.exists()]
    if missing:
        raise SystemExit(f"{fw.name}: the sdist {sdist.name} carries no tests ({', '.join(missing)} missing)")
    return target


def requirement_name(requirement: str) -> str:
    return requirement.split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip()


def is_installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def install_requirements(fw: Framework, cache: Path) -> tuple[Path, list[str]]:
    """The framework's test requirements missing from the virtualenv, in a folder of
    its own; returns (folder, the requirements the index does not have)."""
    target = cache / "deps" / f"py{sys.version_info.major}.{sys.version_info.minor}" / fw.name
    stamp = target / ".requirements.json"
    pinned = {requirement_name(pin).lower() for pin in fw.pins}
    wanted = sorted(r for r in fw.requirements if not is_installed(requirement_name(r))) + list(fw.pins)
    if stamp.exists():
        done = json.loads(stamp.read_text())
        if done.get("wanted") == wanted:
            return target, list(done.get("unavailable", []))
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    constraints = target / ".constraints.txt"
    constraints.write_text(
        "".join(
            f"{d.metadata['Name']}=={d.version}\n"
            for d in importlib.metadata.distributions()
            if d.metadata["Name"] and not d.metadata["Name"].startswith("infratrace") and d.metadata["Name"].lower() not in pinned
        )
    )
    unavailable: list[str] = []
    if wanted:
        say(f"{fw.name}: installing test requirements {' '.join(wanted)}")
        if not pip_install(target, constraints, wanted):
            for requirement in wanted:
                if not pip_install(target, constraints, [requirement]):
                    unavailable.append(requirement)
        prune_duplicates(target, keep=pinned)
    stamp.write_text(json.dumps({"wanted": wanted, "unavailable": unavailable}))
    return target, unavailable


def pip_install(target: Path, constraints: Path, requirements: list[str]) -> bool:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target), "--upgrade"]
    command += ["--constraint", str(constraints), *requirements]
    return subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def prune_duplicates(target: Path, keep: set[str]) -> None:
    """Remove what pip put into ``target`` that the virtualenv has already (same
    version, by the constraints): the virtualenv's copy is the one the tests use."""
    for info in target.glob("*.dist-info"):
        name = info.name[: -len(".dist-info")].rsplit("-", 1)[0]
        if name.lower().replace("_", "-") in keep or not is_installed(name):
            continue
        record = info / "RECORD"
        if record.exists():
            for line in record.read_text().splitlines():
                relative = line.split(",")[0]
                path = (target / relative).resolve()
                if relative and path.is_relative_to(target.resolve()) and path.is_file():
                    path.unlink()
        shutil.rmtree(info, ignore_errors=True)
    for folder in sorted((p for p in target.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


# -- running a suite ---------------------------------------------------------------------


def environment(paths: Sequence[Path], extra: dict[str, str]) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("INFRATRACE", "OTEL_", "PYTEST_", "DJANGO_", "CELERY_")) and key != "PYTHONPATH"
    }
    env["PYTHONPATH"] = os.pathsep.join(str(path) for path in paths)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONHASHSEED"] = "0"
    env.update(extra)
    return env


def runs_folder(fw: Framework, args: argparse.Namespace, cache: Path) -> Path:
    database = f"-{args.database}" if fw.runner == "django" and args.database != "sqlite" else ""
    return cache / "runs" / f"{fw.name}{database}"


def run_suite(fw: Framework, source: Path, deps: Path, label: str, traced: bool, args: argparse.Namespace, cache: Path) -> Run:
    folder = runs_folder(fw, args, cache) / label
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    traces = folder / "traces"
    log = folder / "output.log"
    extra: dict[str, str] = {}
    paths: list[Path] = []
    if traced:
        traces.mkdir()
        extra["INFRATRACE_SUITE_TRACES"] = str(traces)
        paths.append(INJECT)
    if fw.runner == "django":
        results = folder / "results.jsonl"
        paths.append(DJANGO_HELPERS)
        extra["INFRATRACE_SUITE_RESULTS"] = str(results)
        extra["INFRATRACE_SUITE_TIMEOUT"] = str(args.timeout)
        if args.database == "postgresql":
            extra["INFRATRACE_SUITE_DATABASE"] = "postgresql"
        if args.all_signals:
            extra["INFRATRACE_SUITE_ALL_SIGNALS"] = "1"
        labels = args.django_labels.split(",") if args.django_labels else list(DJANGO_LABELS)
        command = [sys.executable, "runtests.py", "--settings=infratrace_suite_settings", "--noinput"]
        command += [f"--parallel={args.parallel}", "-v", "1", *labels]
        cwd = source / "tests"
    else:
        junit = folder / "junit.xml"
        command = [sys.executable, "-m", "pytest", *fw.paths, "-p", "no:cacheprovider", f"--junitxml={junit}"]
        command += ["--continue-on-collection-errors"]
        command += ["-o", "junit_family=xunit1", "-q", f"--timeout={args.timeout}", "-W", "ignore::pytest.PytestConfigWarning"]
        cwd = source
    paths.append(deps)
    env = environment(paths, extra)
    say(f"{fw.name}: {label} run ({' '.join(command[1:4])} ...), log {log}")
    started = time.monotonic()
    timed_out = False
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode: int | None = process.wait(timeout=args.run_timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            returncode = None
    seconds = time.monotonic() - started
    outcomes = read_outcomes(fw, folder)
    run = Run(label, outcomes, returncode, seconds, timed_out, log)
    if traced:
        run.spans = count_spans(traces)
        errors = traces / "inject-errors.txt"
        run.inject_errors = errors.read_text() if errors.exists() else ""
    stopped = " (timed out)" if timed_out else ""
    say(f"{fw.name}: {label}: {len(outcomes)} tests, {summary(outcomes)}, {seconds:.0f} s{stopped}")
    return run


def merge(outcomes: dict[str, Outcome], key: str, outcome: Outcome) -> None:
    previous = outcomes.get(key)
    if previous is None or SEVERITY[outcome[0]] > SEVERITY[previous[0]]:
        outcomes[key] = outcome


def read_outcomes(fw: Framework, folder: Path) -> dict[str, Outcome]:
    return read_django_results(folder / "results.jsonl") if fw.runner == "django" else read_junit(folder / "junit.xml")


def read_junit(path: Path) -> dict[str, Outcome]:
    outcomes: dict[str, Outcome] = {}
    if not path.exists():
        return outcomes
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        key = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome: Outcome = ("passed", "")
        for child in case:
            text = ((child.get("message") or "") + "\n" + (child.text or "")).strip()
            if child.tag == "error":
                merge(outcomes, key, ("error", text))
                outcome = ("error", text)
            elif child.tag == "failure":
                outcome = max(outcome, ("failed", text), key=lambda o: SEVERITY[o[0]])
            elif child.tag == "skipped":
                kind = "xfailed" if (child.get("type") or "") == "pytest.xfail" else "skipped"
                if outcome[0] == "passed":
                    outcome = (kind, text)
        merge(outcomes, key, outcome)
    return outcomes


def read_django_results(path: Path) -> dict[str, Outcome]:
    outcomes: dict[str, Outcome] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                merge(outcomes, entry["id"], (entry["outcome"], entry.get("detail", "")))
    return outcomes


def count_spans(traces: Path) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for path in traces.glob("traces-*.jsonl*"):
        with path.open(errors="replace") as lines:
            for line in lines:
                try:
                    name = json.loads(line).get("name", "")
                except ValueError:
                    counts["(unreadable line)"] += 1
                    continue
                counts[name.split(":", 1)[0] + ":" if ":" in name else name] += 1
    return counts


def summary(outcomes: dict[str, Outcome]) -> str:
    counts = collections.Counter(outcome for outcome, _ in outcomes.values())
    return ", ".join(f"{counts[k]} {k}" for k in ("passed", "failed", "error", "skipped", "xfailed", "xpassed") if counts[k])


# -- comparing ---------------------------------------------------------------------------


def excerpt(detail: str, lines: int = 12) -> str:
    kept = [line for line in detail.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def compare(plain: list[Run], traced: Run) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(changed, flaky): tests whose traced outcome differs from the plain run's, and,
    among them, those whose plain runs differ from each other too."""
    changed: list[dict[str, str]] = []
    flaky: list[dict[str, str]] = []
    keys = set(traced.outcomes).union(*(run.outcomes for run in plain))
    for key in sorted(keys):
        before = [run.outcomes.get(key, ("missing", "")) for run in plain]
        after = traced.outcomes.get(key, ("missing", ""))
        if all(b[0] == after[0] for b in before):
            continue
        entry = {
            "test": key,
            "plain": " / ".join(b[0] for b in before),
            "traced": after[0],
            "traced_detail": excerpt(after[1]),
            "plain_detail": excerpt(next((b[1] for b in before if b[1]), "")),
        }
        (flaky if len({b[0] for b in before}) > 1 else changed).append(entry)
    return changed, flaky


# -- the report ----------------------------------------------------------------------------


def suite_title(result: Result, args: argparse.Namespace) -> str:
    return f"django ({args.database})" if result.framework.runner == "django" else result.framework.name


def report(results: list[Result], args: argparse.Namespace) -> str:
    out = ["# Framework suites with infratrace injected", ""]
    command = " ".join([".venv/bin/python", "scripts/framework_suites.py", *args.argv])
    out.append(f"Python {sys.version.split()[0]}; command: `{command}`")
    out.append("")
    out.append("| framework | version | tests | plain | traced | spans written | changed | differ between plain runs |")
    out.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for result in results:
        if result.problem:
            out.append(f"| {suite_title(result, args)} | {result.version} | — | {result.problem} | | | | |")
            continue
        plain, traced = result.runs[:-1], result.runs[-1]
        spans = ", ".join(f"{n} {k}" for k, n in traced.spans.most_common()) or "none"
        out.append(
            f"| {suite_title(result, args)} | {result.version} | {len(traced.outcomes)} | "
            + " / ".join(summary(run.outcomes) for run in plain)
            + f" | {summary(traced.outcomes)} | {spans} | {len(result.changed)} | {len(result.flaky)} |"
        )
    for result in results:
        name = suite_title(result, args)
        if result.unavailable:
            out += ["", f"{name}: test requirements not available from the index: {', '.join(result.unavailable)}"]
        for run in result.runs:
            if run.timed_out:
                out += ["", f"{name}: the {run.label} run was stopped after {run.seconds:.0f} s (--run-timeout)"]
            if run.inject_errors:
                out += ["", f"{name}: injecting tracing failed:", "```", run.inject_errors.strip(), "```"]
        sections = (("changed outcomes", result.changed), ("differ between plain runs (not infratrace)", result.flaky))
        for title, entries in sections:
            if not entries:
                continue
            out += ["", f"## {name}: {title}", ""]
            for entry in entries:
                out.append(f"- `{entry['test']}`: plain {entry['plain']}, traced {entry['traced']}")
                detail = entry["traced_detail"] or entry["plain_detail"]
                if detail:
                    out += ["  ```", *("  " + line for line in detail.splitlines()), "  ```"]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("frameworks", nargs="*", metavar="FRAMEWORK", help=f"any of {', '.join(FRAMEWORKS)} (default: all)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="sdists, sources, requirements, runs")
    parser.add_argument("--plain-runs", type=int, default=1, help="plain runs to compare with (2: finds flaky tests)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per test")
    parser.add_argument("--run-timeout", type=float, default=3600, help="seconds per run")
    parser.add_argument("--parallel", type=int, default=2, help="Django runtests.py --parallel")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite", help="Django's databases")
    parser.add_argument("--django-labels", default="", help="comma-separated runtests.py labels")
    parser.add_argument(
        "--all-signals", action="store_true", help="Django: trace every signal (setting_changed, pre_init... too)"
    )
    parser.add_argument("--reuse-plain", action="store_true", help="keep the plain runs of an earlier call")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    unknown = [name for name in args.frameworks if name not in FRAMEWORKS]
    if unknown:
        parser.error(f"unknown framework {', '.join(unknown)}: choose from {', '.join(FRAMEWORKS)}")
    if args.plain_runs < 1:
        parser.error("--plain-runs must be at least 1")
    cache: Path = args.cache.resolve()
    chosen = [FRAMEWORKS[name] for name in (args.frameworks or FRAMEWORKS)]
    results = [suite(fw, args, cache) for fw in chosen]
    text = report(results, args)
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "report.md").write_text(text)
    (cache / "report.json").write_text(json.dumps([result_json(result) for result in results], indent=2))
    print(text)
    if any(result.problem for result in results):
        return 2
    return 1 if any(result.changed for result in results) else 0


def suite(fw: Framework, args: argparse.Namespace, cache: Path) -> Result:
    try:
        version = installed_version(fw.dist)
    except importlib.metadata.PackageNotFoundError:
        return Result(fw, "-", [], [], [], [], problem="not installed")
    try:
        source = unpack(fw, fetch_sdist(fw, version, cache), cache)
    except (subprocess.CalledProcessError, OSError, tarfile.TarError) as exc:
        return Result(fw, version, [], [], [], [], problem=f"no sdist: {exc}")
    deps, unavailable = install_requirements(fw, cache)
    plain: list[Run] = []
    for index in range(args.plain_runs):
        label = f"plain-{index + 1}"
        previous = runs_folder(fw, args, cache) / label
        if args.reuse_plain and previous.exists():
            outcomes = read_outcomes(fw, previous)
            if outcomes:
                plain.append(Run(label, outcomes, 0, 0.0, False, previous / "output.log"))
                continue
        plain.append(run_suite(fw, source, deps, label, False, args, cache))
    traced = run_suite(fw, source, deps, "traced", True, args, cache)
    runs = [*plain, traced]
    if not traced.outcomes or not all(run.outcomes for run in plain):
        logs = ", ".join(str(run.log) for run in runs if not run.outcomes)
        return Result(fw, version, runs, unavailable, [], [], problem=f"no test outcomes (see {logs})")
    changed, flaky = compare(plain, traced)
    return Result(fw, version, runs, unavailable, changed, flaky)


def result_json(result: Result) -> dict[str, object]:
    return {
        "framework": result.framework.name,
        "version": result.version,
        "problem": result.problem,
        "unavailable": result.unavailable,
        "runs": [
            {
                "label": run.label,
                "tests": len(run.outcomes),
                "outcomes": dict(collections.Counter(o for o, _ in run.outcomes.values())),
                "returncode": run.returncode,
                "seconds": round(run.seconds, 1),
                "timed_out": run.timed_out,
                "spans": dict(run.spans),
                "inject_errors": run.inject_errors,
            }
            for run in result.runs
        ],
        "changed": result.changed,
        "differ_between_plain_runs": result.flaky,
    }


if __name__ == "__main__":
    sys.exit(main())
