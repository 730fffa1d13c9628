"""Tracing injected into every app a framework's own test suite makes, the way a user
adds it, without touching the suite's sources:

- infratrace writes JSON lines with the file driver (one file per process) into the
  folder ``$INFRATRACE_SUITE_TRACES``, so the whole pipeline runs;
- ``Starlette``: ``build_middleware_stack`` builds the stack with
  ``infratrace_asgi.TraceMiddleware`` first among the user middleware, as
  ``app.add_middleware(TraceMiddleware)`` puts it (``app.user_middleware`` itself is
  left as the test made it);
- ``Flask``: ``Flask.__init__`` ends with ``infratrace_flask.InfraTrace(app)``;
- ``Celery``: ``Celery.__init__`` ends with ``infratrace_celery.instrument(app)``;
- Django: the settings module ``infratrace_suite_settings`` adds the app and the
  middleware (Django's test runner, not an app constructor, decides the settings).

The frameworks are patched when their module is imported (a post-import hook), so a
process that never imports one does not import it either. A hook that fails is written
to ``inject-errors.txt`` in the traces folder, which the suite script reports."""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import os
import sys
import traceback
import types
from collections.abc import Callable, Sequence
from typing import Any

_traces = ""


def install(traces: str) -> None:
    global _traces
    _traces = traces
    import infratrace

    infratrace.configure(
        {
            "infratrace": {"service": "framework-suite"},
            "trace": {
                "suite": {
                    "driver": "file",
                    "json": True,
                    "setting": {"output": os.path.join(traces, "traces-{pid}.jsonl")},
                }
            },
        }
    )
    sys.meta_path.insert(0, PostImportHooks(HOOKS))
    for name, hook in HOOKS.items():
        module = sys.modules.get(name)
        if module is not None:
            _run(hook, module)


def _starlette(module: types.ModuleType) -> None:
    starlette = module.Starlette
    build = starlette.build_middleware_stack

    @functools.wraps(build)
    def build_middleware_stack(self: Any) -> Any:
        from infratrace_asgi import TraceMiddleware
        from starlette.middleware import Middleware

        user = self.user_middleware
        self.user_middleware = [Middleware(TraceMiddleware), *user]
        try:
            return build(self)
        finally:
            self.user_middleware = user

    starlette.build_middleware_stack = build_middleware_stack


def _flask(module: types.ModuleType) -> None:
    flask = module.Flask
    init = flask.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        from infratrace_flask import InfraTrace

        InfraTrace(self)

    flask.__init__ = __init__


def _celery(module: types.ModuleType) -> None:
    celery = module.Celery
    init = celery.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        import infratrace_celery

        infratrace_celery.instrument(self)

    celery.__init__ = __init__


HOOKS: dict[str, Callable[[types.ModuleType], None]] = {
    "starlette.applications": _starlette,
    "flask.app": _flask,
    "celery.app.base": _celery,
}


def _run(hook: Callable[[types.ModuleType], None], module: types.ModuleType) -> None:
    try:
        hook(module)
    except Exception:
        message = f"pid {os.getpid()}: {module.__name__}: {traceback.format_exc()}"
        sys.stderr.write(f"infratrace_suite_inject: {message}")
        with open(os.path.join(_traces, "inject-errors.txt"), "a") as errors:
            errors.write(message)


class PostImportHooks(importlib.abc.MetaPathFinder):
    """Runs a hook on a module right after it is executed on import."""

    def __init__(self, hooks: dict[str, Callable[[types.ModuleType], None]]) -> None:
        self.hooks = hooks
        self.finding: set[str] = set()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        hook = self.hooks.get(fullname)
        if hook is None or fullname in self.finding:
            return None
        self.finding.add(fullname)
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self.finding.discard(fullname)
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = HookedLoader(spec.loader, hook)
        return spec


class HookedLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, hook: Callable[[types.ModuleType], None]) -> None:
        self.loader = loader
        self.hook = hook

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: types.ModuleType) -> None:
        self.loader.exec_module(module)
        _run(self.hook, module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)
