"""infratrace installs like a real package: scripts/build_dists.py builds the wheelhouse
(wheels and sdists of all seven distributions, twine-checked), and a fresh venv outside
the repository installs from it — one adapter alone, then the core with every adapter
extra — and traces a request through each framework with nothing of the source tree on
its path.

The frameworks come from the configured package index; every infratrace distribution
comes from the wheelhouse, as pip is given no index for them (``--no-index``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTIONS = (
    "infratrace",
    "infratrace-asgi",
    "infratrace-django",
    "infratrace-flask",
    "infratrace-celery",
    "infratrace-http",
    "infratrace-sqlalchemy",
)
EXTRAS = "django,celery,flask,asgi,http,sqlalchemy"


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{argv} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _clean_env() -> dict[str, str]:
    """The environment without anything that would put the source tree or this test's
    venv on the installed venv's path; pip's own settings (the index) stay."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _third_party_requirements(wheelhouse: Path) -> list[str]:
    """What our wheels require from outside the project, read from their metadata."""
    found: list[str] = []
    for wheel in sorted(wheelhouse.glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            lines = archive.read(metadata).decode().splitlines()
        for line in lines:
            if not line.startswith("Requires-Dist: "):
                continue
            requirement = Requirement(line.removeprefix("Requires-Dist: "))
            if requirement.name.startswith("infratrace") or requirement.extras:
                continue
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue  # an optional dependency (rich, greptimedb-ingester, an http extra) or another Python's
            found.append(str(requirement))
    return found


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheelhouse") / "dist"
    _run([sys.executable, str(ROOT / "scripts" / "build_dists.py"), "--out", str(out)], cwd=ROOT)
    return out


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A working folder outside the repository, with its own venv in ``venv/``."""
    where = tmp_path_factory.mktemp("outside")
    assert ROOT not in where.parents
    _run([sys.executable, "-m", "venv", str(where / "venv")], cwd=where)
    yield where
    shutil.rmtree(where / "venv", ignore_errors=True)


def _pip(outside: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run([str(outside / "venv" / "bin" / "python"), "-m", "pip", *args], cwd=outside, env=_clean_env())


def _installed(outside: Path) -> dict[str, str]:
    listing = json.loads(_pip(outside, "list", "--format=json").stdout)
    return {item["name"].lower().replace("_", "-"): item["version"] for item in listing}


def test_the_wheelhouse_has_every_distribution_as_a_pure_wheel_and_an_sdist(wheelhouse: Path) -> None:
    names = sorted(p.name for p in wheelhouse.iterdir())
    expected = sorted(
        [f"{d.replace('-', '_')}-0.1.0-py3-none-any.whl" for d in DISTRIBUTIONS]
        + [f"{d.replace('-', '_')}-0.1.0.tar.gz" for d in DISTRIBUTIONS]
    )
    assert names == expected
    with zipfile.ZipFile(wheelhouse / "infratrace-0.1.0-py3-none-any.whl") as archive:
        files = set(archive.namelist())
        metadata = archive.read("infratrace-0.1.0.dist-info/METADATA").decode()
    assert {"infratrace/py.typed", "infratrace/viewer/static/index.html", "infratrace/viewer/static/viewer.js"} <= files
    for extra in ("django", "flask", "asgi", "celery", "http", "sqlalchemy", "otlp", "greptime", "cli", "all"):
        assert f"Provides-Extra: {extra}\n" in metadata
    assert 'Requires-Dist: infratrace-django<0.2,>=0.1; extra == "django"' in metadata


def test_installed_from_the_wheelhouse_every_adapter_traces_a_request(wheelhouse: Path, outside: Path) -> None:
    # The frameworks and the core's own dependencies from the configured index...
    _pip(outside, "install", "-q", *_third_party_requirements(wheelhouse), "httpx>=0.27,<1")
    assert not {d for d in DISTRIBUTIONS if d in _installed(outside)}

    # ...one adapter alone: its infratrace<0.2,>=0.1 is found in the wheelhouse.
    _pip(outside, "install", "--no-index", "--find-links", str(wheelhouse), "infratrace-flask")
    installed = _installed(outside)
    assert installed["infratrace-flask"] == "0.1.0"
    assert installed["infratrace"] == "0.1.0"
    assert "infratrace-django" not in installed

    # ...then the core with the adapters as extras, from the wheelhouse only.
    _pip(outside, "install", "--no-index", "--find-links", str(wheelhouse), f"infratrace[{EXTRAS}]")
    installed = _installed(outside)
    assert {d: installed.get(d) for d in DISTRIBUTIONS} == dict.fromkeys(DISTRIBUTIONS, "0.1.0")
    site = Path(
        _run(
            [str(outside / "venv" / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            cwd=outside,
            env=_clean_env(),
        ).stdout.strip()
    )
    for distribution in DISTRIBUTIONS:
        info = site / f"{distribution.replace('-', '_')}-0.1.0.dist-info"
        assert (info / "RECORD").is_file(), f"{distribution} is not installed as a wheel in {site}"
        assert not (info / "direct_url.json").exists(), f"{distribution} was installed from a path or URL, not the wheelhouse"

    # In that venv, from a folder outside the repository, with no PYTHONPATH.
    probe = outside / "packaging_probe.py"
    shutil.copy(ROOT / "tests" / "packaging_probe.py", probe)
    spans_file = outside / "spans.jsonl"
    result = _run(
        [str(outside / "venv" / "bin" / "python"), str(probe), str(spans_file)], cwd=outside, env=_clean_env(), timeout=120
    )
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])

    venv = (outside / "venv").resolve()
    assert Path(report["prefix"]).resolve() == venv
    for module, file in report["files"].items():
        assert Path(file).resolve().is_relative_to(site.resolve()), f"{module} imported from {file}, not from the venv"
    assert not [entry for entry in report["path"] if entry and Path(entry).resolve().is_relative_to(ROOT)]
    assert report["django"] == [200, "django 1"]
    assert report["flask"] == [200, "flask 2"]
    assert report["starlette"] == [200, "starlette 3"]
    assert report["sqlalchemy"] == 1
    assert report["flushed"] is True

    spans: list[dict[str, Any]] = [json.loads(line) for line in spans_file.read_text().splitlines() if line.strip()]

    def one(prefix: str) -> dict[str, Any]:
        found = [span for span in spans if span["name"].startswith(prefix)]
        assert len(found) == 1, f"{prefix}: {[span['name'] for span in spans]}"
        return found[0]

    django, flask, starlette = one("http:GET hello/<int:n>/"), one("http:GET /hello/<int:n>"), one("http:GET /hello/{n:int}")
    for server in (django, flask, starlette):
        assert (server["kind"], server["status_code"], server["status"]) == ("server", 200, "ok")
    assert one("web:__main__.django_request.").get("parent_span_id") == django["span_id"]
    assert one("web:hello")["parent_span_id"] == flask["span_id"]
    assert one("web:__main__.starlette_request.")["parent_span_id"] == starlette["span_id"]
    # Flask on a real server, called through httpx: the client span's traceparent is continued.
    client = one("client:GET 127.0.0.1:")
    assert client["kind"] == "client"
    assert client["parent_span_id"] == one("service:packaged.call")["span_id"]
    assert (flask["trace_id"], flask["parent_span_id"]) == (client["trace_id"], client["span_id"])
    assert one("db:SELECT")["parent_span_id"] == one("service:packaged.query")["span_id"]
    producer = one("queue:packaged.add")
    assert producer["kind"] == "producer"
    assert producer["parent_span_id"] == one("service:packaged.send")["span_id"]
