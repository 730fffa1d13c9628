"""Run by Python at start-up in every process started under ``infratrace-run`` (this
folder is first on ``PYTHONPATH``).

It imports nothing but ``os`` and ``sys`` at start-up: no framework, not even
infratrace. It reads the table of instrumentations ``infratrace-run`` left in
``$INFRATRACE_AUTO_REGISTRY`` (read once from the entry points of the
``infratrace.instrumentations`` group, so that no process pays for scanning the installed
distributions), drops those named in ``$INFRATRACE_DISABLED_INSTRUMENTATIONS`` and
puts a finder first on ``sys.meta_path``. When a module named in the table has been
executed on import, the finder's loader hands it to its instrumentation
(``infratrace.auto._activate``), importing infratrace then and only then. Modules
imported before this ran (none in a normal start) are handed over at once.

Forked children (gunicorn workers, Celery's prefork pool) inherit the finder and what
it already instrumented; spawned ones (``uvicorn --workers``, ``multiprocessing``'s
spawn, Django's autoreloader) and any other Python process started under the command
run this file again, since they inherit ``PYTHONPATH``.

Then any other ``sitecustomize`` on ``sys.path`` is run, as it would have been without
this one."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing itself is not imported: this runs in every process
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType
    from typing import Any

REGISTRY_ENV = "INFRATRACE_AUTO_REGISTRY"
DISABLED_ENV = "INFRATRACE_DISABLED_INSTRUMENTATIONS"
# (instrumentation name, trigger module, "module:object" of the instrumentation)
Entry = tuple[str, str, str]


def parse_registry(text: str) -> list[Entry]:
    """``name trigger module:object`` entries separated by ``;`` (module names hold
    neither spaces nor semicolons)."""
    entries: list[Entry] = []
    for item in text.split(";"):
        parts = item.split()
        if len(parts) == 3:
            entries.append((parts[0], parts[1], parts[2]))
    return entries


def disabled_names(environ: Any = None) -> set[str]:
    raw = (os.environ if environ is None else environ).get(DISABLED_ENV, "")
    return {part.strip().lower() for part in raw.split(",") if part.strip()}


class _State:
    """Instrumentations waiting for their module, and the ones that ran."""

    def __init__(self, entries: Sequence[Entry]) -> None:
        self.triggers: dict[str, list[Entry]] = {}
        for entry in entries:
            self.triggers.setdefault(entry[1], []).append(entry)
        self.done: set[Entry] = set()
        self.running = False
        self.pending: list[tuple[Entry, ModuleType]] = []


def _fire(state: _State, module: ModuleType) -> None:
    """Hand ``module`` to each instrumentation waiting for it. An instrumentation that
    imports a watched module itself (infratrace importing ``logging``) queues that one
    until it is done, so none runs half-imported."""
    for entry in state.triggers.get(module.__name__, ()):
        if entry not in state.done:
            state.done.add(entry)
            state.pending.append((entry, module))
    if state.running:
        return
    state.running = True
    try:
        while state.pending:
            entry, target = state.pending.pop(0)
            _activate(entry, target)
    finally:
        state.running = False


def _activate(entry: Entry, module: ModuleType) -> None:
    try:
        from infratrace.auto._activate import activate
    except ImportError as exc:
        if exc.name in ("infratrace", "infratrace.auto", "infratrace.auto._activate"):
            return  # an interpreter without infratrace (another Python started under the command)
        _say(f"infratrace: {entry[0]} not instrumented: {type(exc).__name__}: {exc}")
        return
    except Exception as exc:
        _say(f"infratrace: {entry[0]} not instrumented: {type(exc).__name__}: {exc}")
        return
    activate(entry[0], entry[2], module)


def _say(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
    except Exception:
        pass


class _HookedLoader:
    """The module's own loader, plus the hand-over once the module is executed. The
    module's ``__loader__`` and ``__spec__.loader`` are set back to that loader."""

    def __init__(self, loader: Any, state: _State) -> None:
        self.loader = loader
        self.state = state

    def create_module(self, spec: Any) -> ModuleType | None:
        create = getattr(self.loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        try:
            spec = module.__spec__
            if spec is not None and getattr(spec, "loader", None) is self:
                spec.loader = self.loader
            if getattr(module, "__loader__", None) is self:
                module.__loader__ = self.loader
        except Exception:
            pass
        self.loader.exec_module(module)
        _fire(self.state, module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


class PostImportFinder:
    """First on ``sys.meta_path``: finds nothing itself; for a watched module it asks
    the finders after it and wraps the loader they return."""

    def __init__(self, state: _State) -> None:
        self.state = state
        self.finding: set[str] = set()

    def find_spec(self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None) -> Any:
        if fullname not in self.state.triggers or fullname in self.finding:
            return None
        self.finding.add(fullname)
        try:
            for finder in sys.meta_path:
                if finder is self:
                    continue
                find_spec = getattr(finder, "find_spec", None)
                if find_spec is None:
                    continue
                spec = find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self.finding.discard(fullname)
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        spec.loader = _HookedLoader(loader, self.state)
        return spec

    def invalidate_caches(self) -> None:
        pass


def install(entries: Sequence[Entry], environ: Any = None) -> PostImportFinder | None:
    """Watch for the modules of ``entries`` not disabled; hand over at once those
    already imported. Returns the finder (``None`` when there is nothing to watch)."""
    disabled = disabled_names(environ)
    state = _State([entry for entry in entries if entry[0] not in disabled])
    if not state.triggers:
        return None
    finder = PostImportFinder(state)
    sys.meta_path.insert(0, finder)
    for name in list(state.triggers):
        module = sys.modules.get(name)
        if module is not None:
            _fire(state, module)
    return finder


def _registry_from_metadata() -> list[Entry] | None:
    """Without ``infratrace-run`` (this folder put on ``PYTHONPATH`` by hand): the
    entry points, read here (which imports infratrace), unknown names reported."""
    try:
        from infratrace.auto import _registry
    except ImportError:
        return None
    try:
        entries = _registry.load_registry()
        _registry.report_unknown(entries, os.environ)
        return entries
    except Exception as exc:
        _say(f"infratrace: instrumentations not loaded: {type(exc).__name__}: {exc}")
        return None


def _chain() -> None:
    """Run the ``sitecustomize`` that this one hides (the next one on ``sys.path``)."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != here]
    try:
        import importlib.machinery
        import importlib.util

        spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
        if spec is None or spec.loader is None:
            return
        module = importlib.util.module_from_spec(spec)
        sys.modules["sitecustomize"] = module
        spec.loader.exec_module(module)
    except Exception as exc:
        _say(f"infratrace: the other sitecustomize failed: {type(exc).__name__}: {exc}")


def _main() -> None:
    text = os.environ.get(REGISTRY_ENV)
    entries = parse_registry(text) if text is not None else _registry_from_metadata()
    if entries:
        try:
            install(entries)
        except Exception as exc:
            _say(f"infratrace: automatic instrumentation not installed: {type(exc).__name__}: {exc}")


if __name__ == "sitecustomize":  # run by site, not imported as infratrace.auto.bootstrap.sitecustomize
    _main()
    _chain()
