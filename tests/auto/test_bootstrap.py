"""``infratrace-run`` and its bootstrap in real processes: what is instrumented, the
opt-out, reports on stderr, chaining to another ``sitecustomize``, and a failing
instrumentation that leaves the program running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from infratrace.auto import _registry
from infratrace.auto.bootstrap import sitecustomize
from infratrace.auto.run import BOOTSTRAP_DIR, prepare_environment

from .conftest import APPS, RUN, names, read_spans

FLASK_REQUEST = """
import flask
app = flask.Flask("probe")
app.get("/hi")(lambda: "hi")
print(app.test_client().get("/hi").status_code, sorted(app.extensions))
"""


def run(
    code: str, cwd: Path, env: dict[str, str] | None = None, via: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("INFRATRACE_", "OTEL_"))}
    environ.update({"PYTHONPATH": str(APPS), **(env or {})})
    argv = [*(RUN if via is None else via), sys.executable, "-c", code]
    return subprocess.run(argv, cwd=cwd, env=environ, capture_output=True, text=True, timeout=60)


def test_a_flask_app_is_traced_and_the_opt_out_leaves_it_alone(workdir: Path) -> None:
    traced = run(FLASK_REQUEST, workdir)
    assert traced.returncode == 0, traced.stderr
    assert traced.stdout.split("\n")[0] == "200 ['infratrace']"
    assert names(read_spans(workdir)) == ["http:GET /hi", "web:<lambda>"]
    (workdir / "traces.jsonl").unlink()

    plain = run(FLASK_REQUEST, workdir, {"INFRATRACE_DISABLED_INSTRUMENTATIONS": "Flask, httpx"})
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.split("\n")[0] == "200 []"
    assert plain.stderr == ""
    assert read_spans(workdir) == []


def test_an_unknown_name_is_reported_once_and_the_program_runs(workdir: Path) -> None:
    result = run(FLASK_REQUEST, workdir, {"INFRATRACE_DISABLED_INSTRUMENTATIONS": "flask,fastapi"})
    assert result.returncode == 0
    assert result.stdout.split("\n")[0] == "200 []"  # the known name still applies
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert '"fastapi"' in lines[0] and "INFRATRACE_DISABLED_INSTRUMENTATIONS" in lines[0]
    assert "valid: " in lines[0] and "starlette" in lines[0] and "django" in lines[0]


def test_nothing_the_program_does_not_import_is_imported(workdir: Path) -> None:
    watched = ("flask", "django", "celery", "starlette", "fastapi", "httpx", "requests", "urllib3", "sqlalchemy")
    code = (
        "import sys, json\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {watched!r} or m.startswith('infratrace'))))"
    )
    result = run(code, workdir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert result.stderr == ""


STARLETTE_APPS = """
import warnings
warnings.simplefilter("ignore")
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from fastapi import FastAPI
from infratrace_asgi import TraceMiddleware

async def hi(request):
    return PlainTextResponse("hi")

mine = Starlette(routes=[Route("/mine", hi)])
mine.add_middleware(TraceMiddleware)          # the program's own: not added again
plain = Starlette(routes=[Route("/plain", hi)])
fast = FastAPI()

@fast.get("/fast")
async def fast_hi() -> str:
    return "hi"

for app, path in ((mine, "/mine"), (plain, "/plain"), (fast, "/fast")):
    with TestClient(app) as client:
        assert client.get(path).status_code == 200
    print(type(app.middleware_stack).__name__)
"""


def test_every_starlette_and_fastapi_app_gets_the_middleware_once_outermost(workdir: Path) -> None:
    result = run(STARLETTE_APPS, workdir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ServerErrorMiddleware", "TraceMiddleware", "TraceMiddleware"]
    requests = sorted(span["name"] for span in read_spans(workdir) if span["name"].startswith("http:"))
    assert requests == ["http:GET /fast", "http:GET /mine", "http:GET /plain"]


DJANGO_SETTINGS = """
import django
from django.conf import settings
settings.configure(INSTALLED_APPS={apps!r}, MIDDLEWARE={middleware!r})
django.setup()
from django.apps import apps
print(settings.INSTALLED_APPS, settings.MIDDLEWARE, apps.is_installed("infratrace_django"))
"""


def test_django_settings_get_the_app_and_the_middleware_once(workdir: Path) -> None:
    added = run(DJANGO_SETTINGS.format(apps=("django.contrib.contenttypes",), middleware=["x.Middleware"]), workdir)
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == (
        "('django.contrib.contenttypes', 'infratrace_django') ['infratrace_django.TraceMiddleware', 'x.Middleware'] True"
    )
    present = DJANGO_SETTINGS.format(
        apps=["infratrace_django"], middleware=["x.M", "infratrace_django.middleware.TraceMiddleware"]
    )
    kept = run(present, workdir)
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.strip() == "['infratrace_django'] ['x.M', 'infratrace_django.middleware.TraceMiddleware'] True"


def test_log_correlation_is_off_by_default_and_on_when_asked(workdir: Path) -> None:
    code = (
        "import logging, sys\n"
        "logging.getLogger('x').warning('m', extra={'trace_id': 'mine'})\n"
        "print(hasattr(logging.makeLogRecord({}), 'trace_id'), sorted(m for m in sys.modules if m == 'infratrace'))"
    )
    default = run(code, workdir)
    assert default.returncode == 0, default.stderr
    assert default.stdout.strip() == "False []"  # the program's own trace_id extra still works

    on = run("import logging; print(repr(logging.makeLogRecord({}).trace_id))", workdir, {"INFRATRACE_LOG_CORRELATION": "true"})
    assert on.returncode == 0, on.stderr
    assert on.stdout.strip() == "''"

    bad = run("print('ran')", workdir, {"INFRATRACE_LOG_CORRELATION": "maybe"})
    assert bad.stdout.strip() == "ran"
    assert "INFRATRACE_LOG_CORRELATION = 'maybe' is invalid" in bad.stderr


def test_another_sitecustomize_still_runs(workdir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import builtins\nbuiltins.OTHER_SITECUSTOMIZE = 'ran'\n")
    code = FLASK_REQUEST + "import builtins, sys; print(builtins.OTHER_SITECUSTOMIZE, sys.modules['sitecustomize'].__file__)"
    result = run(code, workdir, {"PYTHONPATH": f"{other}{os.pathsep}{APPS}"})
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()[:2]
    assert first == "200 ['infratrace']"
    assert second == f"ran {other / 'sitecustomize.py'}"


def test_a_failing_instrumentation_is_one_line_and_the_program_runs(tmp_path: Path) -> None:
    (tmp_path / "broken_instrumentation.py").write_text("def instrument(module):\n    raise RuntimeError('cannot')\n")
    env = {
        "PYTHONPATH": os.pathsep.join([BOOTSTRAP_DIR, str(tmp_path)]),
        sitecustomize.REGISTRY_ENV: "colorsys colorsys broken_instrumentation:instrument;nosuch nosuch missing:x",
    }
    result = run("import colorsys; print(colorsys.rgb_to_hsv(1, 0, 0))", tmp_path, env, via=[])
    assert result.returncode == 0
    assert result.stdout.strip() == "(0.0, 1.0, 1)"
    assert result.stderr.splitlines() == [
        "infratrace: colorsys not instrumented (broken_instrumentation:instrument): RuntimeError: cannot"
    ]


def test_a_bad_configuration_stops_before_the_command(workdir: Path) -> None:
    (workdir / "infratrace.toml").write_text('[trace]\ndriver = "nope"\n')
    result = run("print('ran')", workdir)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "infratrace-run:" in result.stderr and "trace.driver" in result.stderr and "nope" in result.stderr


def test_a_missing_command_is_reported(workdir: Path) -> None:
    result = subprocess.run([*RUN, "no-such-command-here"], cwd=workdir, capture_output=True, text=True, timeout=30)
    assert result.returncode == 127
    assert "cannot run 'no-such-command-here'" in result.stderr


def test_the_environment_puts_the_bootstrap_first_once() -> None:
    env = prepare_environment({"PYTHONPATH": f"/a{os.pathsep}{BOOTSTRAP_DIR}{os.pathsep}/b"})
    assert env["PYTHONPATH"].split(os.pathsep) == [BOOTSTRAP_DIR, "/a", "/b"]
    entries = sitecustomize.parse_registry(env[sitecustomize.REGISTRY_ENV])
    assert entries == _registry.load_registry({})
    triggers = {entry[1]: entry[0] for entry in entries}
    # The adapters installed here declare these (their pyproject.toml entry points).
    assert triggers["flask"] == "flask" and triggers["django"] == "django"
    assert triggers["starlette.applications"] == "starlette" and triggers["celery.app.base"] == "celery"
    assert triggers["urllib.request"] == "urllib" and triggers["sqlalchemy"] == "sqlalchemy"
    assert "logging" not in triggers
    assert ("logging", "logging", _registry.LOG_ENTRY[2]) in _registry.load_registry({"INFRATRACE_LOG_CORRELATION": "1"})


def test_tracing_disabled_runs_the_command_untouched(workdir: Path) -> None:
    result = run("import os; print(os.environ.get('PYTHONPATH'))", workdir, {"INFRATRACE_DISABLED": "true"})
    assert result.returncode == 0
    assert result.stdout.strip() == str(APPS)
