"""The adapters are built on infratrace's public API only: ``infratrace``,
``infratrace.instrumentation`` and the public context modules ``infratrace.baggage``
and ``infratrace.logging``. Anything else may change without notice, and an adapter
that reaches into it would break (or, worse, go on running wrongly) when it does.

Every ``.py`` file of each adapter is read with :mod:`ast` and these are reported, with
file and line:

- an import of any other infratrace module (``infratrace._span``, ``infratrace.web``,
  ``from infratrace import _tracer``), or of a private name (``from infratrace import _x``);
- a private attribute of an infratrace module (``infratrace._tracer``);
- an attribute access ``x._name`` (or ``getattr(x, "_name")``) where ``_name`` is a
  private attribute of infratrace's span, context, budget or tracer classes (read from
  the classes themselves, so the list follows the core). The object's type is not known
  statically, so any such name counts, except on ``self``/``cls`` inside the adapter's
  own classes (which may well have a ``_token`` of their own).
"""

from __future__ import annotations

import ast
import inspect
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import infratrace
from infratrace import NonRecordingSpan, Span, SpanBudget, SpanContext, Tracer

ROOT = Path(__file__).resolve().parent.parent
ADAPTERS = ("asgi", "django", "flask", "celery", "http", "sqlalchemy")
ALLOWED_MODULES = frozenset({"infratrace", "infratrace.instrumentation", "infratrace.baggage", "infratrace.logging"})
SKIPPED_DIRS = frozenset({"build", "dist", "__pycache__", ".tox", ".venv"})
ATTRIBUTE_FUNCTIONS = frozenset({"getattr", "setattr", "hasattr", "delattr"})


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_attribute_names() -> frozenset[str]:
    """The single-underscore attributes of infratrace's Span, SpanContext,
    NonRecordingSpan, SpanBudget and Tracer: slots, class attributes and methods,
    annotated fields, and what a fresh Tracer sets on itself."""
    names: set[str] = set()
    for cls in (Span, SpanContext, NonRecordingSpan, SpanBudget, Tracer):
        for klass in cls.__mro__:
            if klass is object:
                continue
            slots = klass.__dict__.get("__slots__", ())
            names.update((slots,) if isinstance(slots, str) else slots)
            names.update(klass.__dict__)
            names.update(inspect.get_annotations(klass))
    names.update(vars(Tracer()))
    return frozenset(name for name in names if _is_private(name))


PRIVATE_ATTRIBUTES = private_attribute_names()
# "web" as well: ``infratrace.web`` is gone, but an adapter importing it must be told.
SUBMODULES = frozenset(module.name for module in pkgutil.iter_modules(infratrace.__path__)) | {"web"}


def _module_problem(module: str) -> str | None:
    """Why importing ``module`` (a dotted name under infratrace) is not allowed."""
    if module in ALLOWED_MODULES:
        return None
    if module == "infratrace.web" or module.startswith("infratrace.web."):
        return f"imports {module} (renamed and private now): use infratrace.instrumentation"
    if any(_is_private(part) for part in module.split(".")):
        return f"imports the private module {module}: use infratrace or infratrace.instrumentation"
    return f"imports {module}: adapters use infratrace and infratrace.instrumentation only"


def _is_infratrace(module: str | None) -> bool:
    return module is not None and (module == "infratrace" or module.startswith("infratrace."))


class Checker(ast.NodeVisitor):
    """Collects ``(line, problem)`` for one file."""

    def __init__(self, tree: ast.AST) -> None:
        self.problems: list[tuple[int, str]] = []
        # Local names bound to an infratrace module, and to objects imported from one.
        # Collected up front: a name imported inside a function may be used anywhere.
        self.modules: set[str] = set()
        self.objects: set[str] = set()
        self._classes: list[bool] = []  # per enclosing class: does it derive from infratrace's?
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if _is_infratrace(alias.name):
                        self.modules.add(alias.asname or "infratrace")
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_infratrace(node.module):
                for alias in node.names:
                    local = alias.asname or alias.name
                    if node.module == "infratrace" and alias.name in SUBMODULES:
                        self.modules.add(local)
                    else:
                        self.objects.add(local)

    def _report(self, node: ast.AST, problem: str) -> None:
        self.problems.append((getattr(node, "lineno", 0), problem))

    # -- imports ----------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if _is_infratrace(alias.name):
                problem = _module_problem(alias.name)
                if problem:
                    self._report(node, problem)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module
        if node.level != 0 or module is None or not _is_infratrace(module):
            return
        problem = _module_problem(module)
        if problem:
            self._report(node, problem)
            return
        for alias in node.names:
            name = alias.name
            if _is_private(name):
                self._report(node, f"imports the private name {name} from {module}")
            elif module == "infratrace" and name in SUBMODULES:
                problem = _module_problem(f"infratrace.{name}")
                if problem:
                    self._report(node, problem)

    # -- attributes -------------------------------------------------------------------
    def _is_module(self, node: ast.expr) -> bool:
        """``infratrace``, ``infratrace.instrumentation`` or a local alias of either."""
        if isinstance(node, ast.Name):
            return node.id in self.modules
        return isinstance(node, ast.Attribute) and node.attr == "instrumentation" and self._is_module(node.value)

    def _refers_to_infratrace(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self.objects or node.id in self.modules
        if isinstance(node, ast.Attribute):
            return self._refers_to_infratrace(node.value)
        if isinstance(node, ast.Subscript):
            return self._refers_to_infratrace(node.value)
        return False

    def _check_attribute(self, node: ast.AST, obj: ast.expr, name: str) -> None:
        if not _is_private(name):
            return
        if self._is_module(obj):
            self._report(node, f"reads the private attribute {name} of infratrace ({ast.unparse(obj)}.{name})")
        elif name in PRIVATE_ATTRIBUTES:
            own = isinstance(obj, ast.Name) and obj.id in ("self", "cls") and self._classes and not self._classes[-1]
            if not own:
                self._report(node, f"{ast.unparse(obj)}.{name}: {name} is a private attribute of infratrace's spans or tracer")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._check_attribute(node, node.value, node.attr)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in ATTRIBUTE_FUNCTIONS and len(node.args) >= 2:
            name = node.args[1]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                self._check_attribute(node, node.args[0], name.value)
        # importlib.import_module("infratrace._x") / __import__("infratrace._x")
        called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if called in ("import_module", "__import__") and node.args:
            target = node.args[0]
            if isinstance(target, ast.Constant) and isinstance(target.value, str) and _is_infratrace(target.value):
                problem = _module_problem(target.value)
                if problem:
                    self._report(node, problem)
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._classes.append(any(self._refers_to_infratrace(base) for base in node.bases))
        self.generic_visit(node)
        self._classes.pop()


def check_source(source: str, filename: str = "<string>") -> list[tuple[int, str]]:
    tree = ast.parse(source, filename)
    checker = Checker(tree)
    checker.visit(tree)
    return sorted(checker.problems)


def adapter_files(adapter: str) -> Iterator[Path]:
    for path in sorted((ROOT / "integrations" / adapter).rglob("*.py")):
        relative = path.relative_to(ROOT / "integrations" / adapter).parts
        if not any(part in SKIPPED_DIRS or part.endswith(".egg-info") for part in relative):
            yield path


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_adapter_uses_the_public_api_only(adapter: str) -> None:
    files = list(adapter_files(adapter))
    assert files, f"no Python files found under integrations/{adapter}"
    problems = []
    for path in files:
        for line, problem in check_source(path.read_text(encoding="utf-8"), str(path)):
            problems.append(f"{path.relative_to(ROOT)}:{line}: {problem}")
    assert not problems, f"infratrace_{adapter} goes past infratrace's public API:\n" + "\n".join(problems)


# -- the checker itself -----------------------------------------------------------------


def test_private_attribute_names_come_from_the_classes() -> None:
    assert {"_t0", "_tid", "_sid", "_ctx", "_token", "_pipeline"} <= PRIVATE_ATTRIBUTES
    assert not any(name.startswith("__") or not name.startswith("_") for name in PRIVATE_ATTRIBUTES)


@pytest.mark.parametrize(
    "source",
    [
        "import infratrace._span",
        "import infratrace.web as web",
        "from infratrace.web import WebOptions",
        "from infratrace._tracer import _hook",
        "from infratrace import _tracer",
        "from infratrace import web",
        "from infratrace.instrumentation import _current",
        "import infratrace\ninfratrace._tracer._hook.begin('x')",
        "from infratrace import instrumentation as inst\ninst._spandata",
        "import infratrace.instrumentation\ninfratrace.instrumentation._current.set(None)",
        "def f(span):\n    return span._t0",
        "def f(span):\n    span._token = None",
        "def f(ctx):\n    return getattr(ctx, '_tid')",
        "def f(tracer):\n    return tracer._pipeline",
        "import importlib\nimportlib.import_module('infratrace._web')",
        "from infratrace import Span\nclass MySpan(Span):\n    def f(self):\n        return self._t1",
        "class Cycle:\n    def f(self, span):\n        return span._sid",
    ],
)
def test_checker_reports(source: str) -> None:
    assert check_source(source), source


@pytest.mark.parametrize(
    "source",
    [
        "import infratrace\ninfratrace.begin('x').end()",
        "from infratrace import Span, SpanBudget, ConfigError",
        "from infratrace import instrumentation\ninstrumentation.now_ns()",
        "from infratrace.instrumentation import WebOptions, attach, detach",
        "import infratrace.instrumentation as inst\ninst.set_current_span(None)",
        "class Cycle:\n    __slots__ = ('_token',)\n    def f(self):\n        return self._token",
        "from celery import _state\n_state._get_active_apps()",
        "from . import _producer\n_producer._pending.clear()",
        "def f(span):\n    return span.__class__",
    ],
)
def test_checker_allows(source: str) -> None:
    assert not check_source(source), source
