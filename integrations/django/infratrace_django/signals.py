# mypy: disable-error-code="import-untyped"
"""``event:<signal>`` spans: one span per Django signal receiver call, with no Python
frame added between the signal's ``send()`` and the receiver.

Django has no hook around receiver calls. Wrapping each receiver puts the wrapper's
frame between ``send()`` and the receiver: a ``warnings.warn(..., stacklevel=N)`` in a
receiver then names another file and line (Django's own ``complex_setting_changed``
uses ``stacklevel=5`` to name the line of an ``override_settings`` call), a traceback
gets one more entry, and ``send()`` returns the wrappers instead of the receivers.
So the four dispatch methods — ``send``, ``send_robust``, ``asend``, ``asend_robust`` —
are compiled again from Django's own source, under Django's file name, line numbers
and module globals, with each receiver call ``receiver(signal=self, sender=sender,
**named)`` (or ``await receiver(...)``) between two calls of ours,
``(start(open, self, receiver, sender), done(open, receiver(...)))[1]``, and its
statement inside ``try: ... except BaseException as exc: fail(open, exc); raise``.
The receiver is still called from ``send()``'s own frame at the same line, so
warnings, tracebacks and ``sys._getframe()`` see what they see without tracing. A
coroutine an async receiver returns (gathered by Django) becomes a task, as
``asyncio.gather`` would make it, created while the receiver's span is current, and
the span ends with the task.

Before anything is replaced, Django's unchanged source compiled the same way must give
exactly the code that runs (bytecode, names, line table); if it does not — no source
file, a ``Signal`` patched by someone else, an unknown shape — signal receivers are not
traced and one warning says why: tracing never changes how signals behave.

A signal object does not know its own name: we look it up once among the module
attributes of the loaded modules (``post_save``, ``user_logged_in``, your
``order_placed``); :func:`name_signal` sets it explicitly. A signal that is not traced
gets Django's own methods bound on the instance after its first send, so its sends cost
what they cost without infratrace."""

from __future__ import annotations
import __future__

import ast
import asyncio
import fnmatch
import inspect
import linecache
import logging
import sys
import threading
import types
import weakref
from collections.abc import Callable
from contextvars import Token
from typing import Any, TypeVar

from django.dispatch import Signal

from infratrace.instrumentation import AnySpan, attach, detach, start_span

from ._options import DjangoOptions
from ._views import dotted_path

__all__ = ["install_signal_tracing", "name_signal", "signal_name", "uninstall_signal_tracing"]

logger = logging.getLogger("infratrace_django")

DISPATCH_METHODS = ("send", "send_robust", "asend", "asend_robust")
# Django's own methods, as the class has them when this module is imported.
ORIGINAL_METHODS: dict[str, Callable[..., Any]] = {
    name: Signal.__dict__[name] for name in DISPATCH_METHODS if name in Signal.__dict__
}

_names: weakref.WeakKeyDictionary[Signal, str] = weakref.WeakKeyDictionary()
_decisions: weakref.WeakKeyDictionary[Signal, str | None] = weakref.WeakKeyDictionary()
_scanned_modules = 0
_lock = threading.Lock()
_policy: SignalPolicy | None = None
# Untraced signals with Django's own dispatch methods bound on the instance.
_bypassed: weakref.WeakSet[Signal] = weakref.WeakSet()
# The traced copies of the dispatch methods, built once; or why they could not be.
_traced: dict[str, Callable[..., Any]] | None = None
_untraceable: str | None = None


class SignalPolicy:
    """Which signals are traced: in ``allow`` (when given), else not in ``deny``."""

    def __init__(self, allow: tuple[str, ...], deny: tuple[str, ...], service: str = "") -> None:
        self.allow = allow
        self.deny = deny
        self.service = service

    def traced(self, name: str) -> bool:
        if self.allow:
            return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.allow)
        return not any(fnmatch.fnmatchcase(name, pattern) for pattern in self.deny)


def name_signal(signal: Signal, name: str) -> None:
    """Give ``signal`` the name its spans get (``event:<name>``)."""
    with _lock:
        _names[signal] = name
        _decisions.pop(signal, None)
        _unbypass(signal)


def signal_name(signal: Signal) -> str:
    """The signal's module attribute name, found once among the loaded modules."""
    name = _names.get(signal)
    if name is None:
        with _lock:
            name = _names.get(signal)
            if name is None:
                _scan_modules()
                name = _names.get(signal)
                if name is None:
                    name = _names[signal] = type(signal).__name__
    return name


def _scan_modules() -> None:
    """Map every module-level Signal to its attribute name (again only when new
    modules were loaded since the last scan). Django's own modules win a tie."""
    global _scanned_modules
    modules = list(sys.modules.items())
    if len(modules) == _scanned_modules:
        return
    _scanned_modules = len(modules)
    modules.sort(key=lambda item: not item[0].startswith("django."))
    for _module_name, module in modules:
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        try:
            for attr, value in list(namespace.items()):
                if isinstance(value, Signal) and value not in _names and not attr.startswith("_"):
                    _names[value] = attr
        except Exception:  # an odd module proxy: skip it
            continue


def install_signal_tracing(options: DjangoOptions) -> None:
    """Trace receivers of the signals ``options`` allows (idempotent)."""
    global _policy
    traced = _traced_methods()
    _policy = SignalPolicy(options.signal_allow, options.signal_deny, options.web.service)
    _decisions.clear()
    _unbypass_all()
    if traced is None:
        return
    for name, method in traced.items():
        current = Signal.__dict__.get(name)
        if current is ORIGINAL_METHODS[name] or current is method:
            setattr(Signal, name, method)


def uninstall_signal_tracing() -> None:
    global _policy
    _policy = None
    _unbypass_all()
    for name, method in (_traced or {}).items():
        if Signal.__dict__.get(name) is method:
            setattr(Signal, name, ORIGINAL_METHODS[name])


def _traced_methods() -> dict[str, Callable[..., Any]] | None:
    """The traced copies of Django's dispatch methods (built on first use), or None
    with one warning when they cannot be built exactly."""
    global _traced, _untraceable
    with _lock:
        if _traced is None and _untraceable is None:
            try:
                _traced = {name: traced_copy(method) for name, method in ORIGINAL_METHODS.items()}
            except Exception as exc:
                _untraceable = str(exc) or type(exc).__name__
                logger.warning("infratrace_django: Django signal receivers are not traced: %s", _untraceable)
        return _traced


# -- the calls compiled into the dispatch methods ---------------------------------------


class _Open:
    """The span of the receiver a dispatch method is calling (one per method call)."""

    __slots__ = ("span", "token")

    def __init__(self) -> None:
        self.span: AnySpan | None = None
        self.token: Token[AnySpan | None] | None = None


def _start(open_: _Open, signal: Signal, receiver: Any, sender: Any) -> None:
    """Before a receiver call: its span begins and is current."""
    try:
        event = _event_name(signal)
        if event is None:
            if _policy is not None:
                _bypass(signal)
            return
        if _is_ours(receiver):
            return
        span = _receiver_span(event, receiver, sender)
        token = attach(span)
        open_.span, open_.token = span, token
    except Exception:
        pass


def _done(open_: _Open, value: Any) -> Any:
    """After a receiver call returned ``value``: its span ends; ``value`` is passed on."""
    span, token = open_.span, open_.token
    if span is not None and token is not None:
        open_.span = open_.token = None
        _end(span, token, None)
    return value


def _fail(open_: _Open, exc: BaseException) -> None:
    """A receiver call raised ``exc`` (raised again by the caller): its span ends with it."""
    span, token = open_.span, open_.token
    if span is not None and token is not None:
        open_.span = open_.token = None
        _end(span, token, exc)


def _task(signal: Signal, receiver: Any, sender: Any, awaitable: Any) -> Any:
    """An async receiver's coroutine, about to be gathered: a task made while its span
    is current (gather makes a coroutine a task the same way), the span ending with it."""
    if not asyncio.iscoroutine(awaitable):
        return awaitable
    try:
        event = _event_name(signal)
        if event is None:
            if _policy is not None:
                _bypass(signal)
            return awaitable
        if _is_ours(receiver):
            return awaitable
        loop = asyncio.get_running_loop()
        span = _receiver_span(event, receiver, sender)
        token = attach(span)
    except Exception:
        return awaitable
    try:
        task = loop.create_task(awaitable)
    except Exception:  # gather will fail the same way with the coroutine itself
        _end(span, token, None)
        return awaitable
    try:
        detach(token)
        # gather does not warn about a pending task it made itself: neither for this one
        task._log_destroy_pending = False  # type: ignore[attr-defined]
        task.add_done_callback(lambda done: _task_done(span, done))
    except Exception:
        pass
    return task


def _task_done(span: AnySpan, task: asyncio.Future[Any]) -> None:
    try:
        if task.cancelled():
            span.end(asyncio.CancelledError())
        else:
            exc = task.exception()
            span.end(exc) if exc is not None else span.end()
    except Exception:
        pass


def _is_ours(receiver: Any) -> bool:
    # our own got_request_exception receiver
    return getattr(receiver, "__module__", "") == __name__.rpartition(".")[0] + ".middleware"


def _receiver_span(event: str, receiver: Any, sender: Any) -> AnySpan:
    path = dotted_path(receiver)
    name = event[6:]
    attrs: dict[str, Any] = {
        "kind": "event",
        "target": name,
        "module": "django",
        "operation": path,
        "django.signal": name,
        "django.signal.receiver": path,
    }
    if sender is not None:
        attrs["django.signal.sender"] = dotted_path(sender) if isinstance(sender, type) else type(sender).__name__
    policy = _policy
    if policy is not None and policy.service:
        attrs["service"] = policy.service
    return start_span(event, attrs, kind="internal")


def _end(span: AnySpan, token: Token[AnySpan | None], exc: BaseException | None) -> None:
    try:
        detach(token)
        span.end(exc) if exc is not None else span.end()
    except Exception:  # a faulty custom tracer must not break the send
        pass


def _event_name(signal: Signal) -> str | None:
    try:
        return _decisions[signal]
    except KeyError:
        pass
    policy = _policy
    if policy is None:
        return None
    name = signal_name(signal)
    decision = f"event:{name}" if policy.traced(name) else None
    _decisions[signal] = decision
    return decision


def _bypass(signal: Signal) -> None:
    """Bind Django's methods on this (untraced) signal: the instance attributes shadow
    the traced class methods, so its sends cost what they cost without infratrace. A
    subclass's own override, or an attribute set on the instance (a mock), is left alone."""
    try:
        cls, namespace = type(signal), signal.__dict__
        for name, method in (_traced or {}).items():
            if getattr(cls, name, None) is method and name not in namespace:
                namespace[name] = types.MethodType(ORIGINAL_METHODS[name], signal)
        _bypassed.add(signal)
    except Exception:  # a signal without a __dict__: keep going through the traced methods
        pass


def _unbypass(signal: Signal) -> None:
    try:
        namespace = signal.__dict__
        for name, original in ORIGINAL_METHODS.items():
            bound = namespace.get(name)
            if isinstance(bound, types.MethodType) and bound.__func__ is original and bound.__self__ is signal:
                del namespace[name]
    except Exception:
        pass
    _bypassed.discard(signal)


def _unbypass_all() -> None:
    for signal in list(_bypassed):
        _unbypass(signal)


# -- compiling the traced copies -------------------------------------------------------

_FACTORY = "_infratrace_factory"
_OPEN = "_infratrace_open"
_EXC = "_infratrace_exc"
# The closure the copies see (names without two leading underscores: no mangling).
_HELPERS: dict[str, Any] = {
    "_infratrace_holder": _Open,
    "_infratrace_start": _start,
    "_infratrace_done": _done,
    "_infratrace_fail": _fail,
    "_infratrace_task": _task,
}
_FUTURE_FLAGS = 0
for _feature in __future__.all_feature_names:
    _FUTURE_FLAGS |= getattr(__future__, _feature).compiler_flag
_CO_NESTED = inspect.CO_NESTED


class Untraceable(Exception):
    """Why a dispatch method cannot be compiled again exactly."""


def traced_copy(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` (a method of Django's ``Signal``) compiled again from its source
    with each receiver call traced; :class:`Untraceable` when that source does not
    compile to exactly the code that runs."""
    if not isinstance(function, types.FunctionType):
        raise Untraceable(f"{function!r} is not a function")
    code = function.__code__
    if code.co_freevars:  # super() or a closure: it would not see the same cells
        raise Untraceable(f"{function.__qualname__} has free variables {code.co_freevars}")
    plain = _compile_method(function, instrument=False)
    if not _same_code(plain, code):
        raise Untraceable(f"the source of {function.__qualname__} does not compile to the code that runs")
    traced = _compile_method(function, instrument=True)
    cells = tuple(types.CellType(_HELPERS[name]) for name in traced.co_freevars)
    copy = types.FunctionType(traced, function.__globals__, function.__name__, function.__defaults__, cells)
    copy.__kwdefaults__ = function.__kwdefaults__
    copy.__qualname__ = function.__qualname__
    copy.__module__ = function.__module__
    copy.__doc__ = function.__doc__
    copy.__dict__.update(function.__dict__)
    copy.__annotations__ = dict(function.__annotations__)
    return copy


def _compile_method(function: types.FunctionType, *, instrument: bool) -> types.CodeType:
    """The code of ``function`` compiled again from its module's source file, as the
    module compiles it (the module's imports decide how attribute calls compile), the
    method moved into ``def _infratrace_factory(<helpers>): class <Owner>: <method>``
    so that the helpers are its closure."""
    filename = function.__code__.co_filename
    module = sys.modules.get(function.__module__)
    lines = linecache.getlines(filename, getattr(module, "__dict__", None))
    if not lines:
        raise Untraceable(f"no source for {function.__qualname__} ({filename})")
    tree = ast.parse("".join(lines), filename)
    owner_name, _, name = function.__qualname__.rpartition(".")
    owners = [(i, node) for i, node in enumerate(tree.body) if isinstance(node, ast.ClassDef) and node.name == owner_name]
    if not owners:
        raise Untraceable(f"{function.__qualname__} is not a method of a module-level class")
    index, owner = owners[-1]
    methods = [node for node in owner.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name]
    if not methods or methods[-1].decorator_list:
        raise Untraceable(f"{function.__qualname__} is not a plain method of {owner_name}")
    definition = methods[-1]
    if instrument and not _instrument(definition):
        raise Untraceable(f"no receiver call found in {function.__qualname__}")
    shell = ast.ClassDef(name=owner.name, bases=[], keywords=[], body=[definition], decorator_list=[])
    factory = ast.FunctionDef(
        name=_FACTORY,
        args=ast.arguments(
            posonlyargs=[], args=[ast.arg(arg=helper) for helper in _HELPERS], kwonlyargs=[], kw_defaults=[], defaults=[]
        ),
        body=[shell, ast.Return(value=ast.Name(id=owner.name, ctx=ast.Load()))],
        decorator_list=[],
        returns=None,
    )
    for node in (shell, factory):
        if "type_params" in node._fields:  # Python >= 3.12
            setattr(node, "type_params", [])  # noqa: B010 (not an attribute before 3.12)
        ast.copy_location(node, owner)
    tree.body[index] = factory
    ast.fix_missing_locations(tree)
    compiled = compile(tree, filename, "exec", flags=function.__code__.co_flags & _FUTURE_FLAGS, dont_inherit=True)
    made = _find_code(compiled, [_FACTORY, owner.name, name])
    return _requalified(made, f"{_FACTORY}.<locals>.", nested=bool(function.__code__.co_flags & _CO_NESTED))


def _find_code(code: types.CodeType, path: list[str]) -> types.CodeType:
    for step in path:
        found = [const for const in code.co_consts if isinstance(const, types.CodeType) and const.co_name == step]
        if len(found) != 1:
            raise Untraceable(f"cannot find the compiled {step}")
        code = found[0]
    return code


def _requalified(code: types.CodeType, prefix: str, nested: bool) -> types.CodeType:
    """``code`` (and the code it makes) named without the factory's prefix, and with the
    top-level function's CO_NESTED flag as the original's."""
    consts = tuple(
        _requalified(const, prefix, True)
        if isinstance(const, types.CodeType)
        else const[len(prefix) :]
        if isinstance(const, str) and const.startswith(prefix)  # Python 3.10: MAKE_FUNCTION's qualname
        else const
        for const in code.co_consts
    )
    flags = (code.co_flags & ~_CO_NESTED) | (_CO_NESTED if nested else 0)
    if sys.version_info >= (3, 11):
        qualname = code.co_qualname
        if qualname.startswith(prefix):
            qualname = qualname[len(prefix) :]
        return code.replace(co_consts=consts, co_flags=flags, co_qualname=qualname)
    return code.replace(co_consts=consts, co_flags=flags)


_CODE_ATTRIBUTES = (
    "co_code",
    "co_names",
    "co_varnames",
    "co_cellvars",
    "co_freevars",
    "co_argcount",
    "co_posonlyargcount",
    "co_kwonlyargcount",
    "co_nlocals",
    "co_flags",
    "co_name",
    "co_qualname",
    "co_filename",
    "co_firstlineno",
    "co_linetable",
    "co_exceptiontable",
)


def _same_code(made: types.CodeType, original: types.CodeType) -> bool:
    for attribute in _CODE_ATTRIBUTES:
        if getattr(made, attribute, None) != getattr(original, attribute, None):
            return False
    if len(made.co_consts) != len(original.co_consts):
        return False
    for ours, theirs in zip(made.co_consts, original.co_consts, strict=True):
        if isinstance(ours, types.CodeType) and isinstance(theirs, types.CodeType):
            if not _same_code(ours, theirs):
                return False
        elif type(ours) is not type(theirs) or ours != theirs:
            return False
    return True


def _receiver_call(node: ast.AST) -> tuple[ast.Call, ast.Name, ast.Name, ast.Name] | None:
    """``receiver(signal=<name>, sender=<name>, ...)``: (the call, receiver, signal, sender)."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        return None
    named = {keyword.arg: keyword.value for keyword in node.keywords if keyword.arg is not None}
    signal, sender = named.get("signal"), named.get("sender")
    if isinstance(signal, ast.Name) and isinstance(sender, ast.Name):
        return node, node.func, signal, sender
    return None


_Node = TypeVar("_Node", bound=ast.AST)


def _load(name: str) -> ast.Name:
    return ast.Name(id=name, ctx=ast.Load())


def _call(helper: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=_load(helper), args=list(args), keywords=[])


def _located(node: _Node, where: ast.AST) -> _Node:
    """Give the nodes of ``node`` that have no position ``where``'s."""
    for child in ast.walk(node):
        if "lineno" in child._attributes and getattr(child, "lineno", None) is None:
            ast.copy_location(child, where)
    return node


def _replace(parent: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for field, value in ast.iter_fields(parent):
        if value is old:
            setattr(parent, field, new)
            return
        if isinstance(value, list) and any(item is old for item in value):
            value[[id(item) for item in value].index(id(old))] = new
            return
    raise Untraceable("a receiver call could not be replaced")


def _instrument(definition: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Trace every receiver call in ``definition``; returns how many were found."""
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(definition):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    calls = [found for node in ast.walk(definition) if (found := _receiver_call(node)) is not None]
    statements: dict[int, tuple[ast.stmt, ast.AST]] = {}  # id -> (statement, its function)
    for call, receiver, signal, sender in calls:
        parent = parents[call]
        if isinstance(parent, ast.GeneratorExp) and parent.elt is call:
            # gathered later: a task holds the span
            task = _call("_infratrace_task", _load(signal.id), _load(receiver.id), _load(sender.id), call)
            parent.elt = _located(task, call)
            continue
        target: ast.expr = parent if isinstance(parent, ast.Await) and parent.value is call else call
        holder = parents[target]
        wrapped = ast.Subscript(
            value=ast.Tuple(
                elts=[
                    _call("_infratrace_start", _load(_OPEN), _load(signal.id), _load(receiver.id), _load(sender.id)),
                    _call("_infratrace_done", _load(_OPEN), target),
                ],
                ctx=ast.Load(),
            ),
            slice=ast.Constant(value=1),
            ctx=ast.Load(),
        )
        _replace(holder, target, _located(wrapped, call))
        up: ast.AST = holder
        while not isinstance(up, ast.stmt):
            if isinstance(up, ast.Lambda):
                raise Untraceable("a receiver call in a lambda")
            up = parents[up]
        statement = up
        function = parents[statement]
        while not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if isinstance(function, (ast.ClassDef, ast.Lambda)):
                raise Untraceable("a receiver call outside a function body")
            function = parents[function]
        statements[id(statement)] = (statement, function)
    functions: dict[int, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    for statement, function in statements.values():
        guard = ast.Try(
            body=[statement],
            handlers=[
                ast.ExceptHandler(
                    type=_load("BaseException"),
                    name=_EXC,
                    body=[ast.Expr(value=_call("_infratrace_fail", _load(_OPEN), _load(_EXC))), ast.Raise(exc=None, cause=None)],
                )
            ],
            orelse=[],
            finalbody=[],
        )
        _replace(parents[statement], statement, _located(guard, statement))
        assert isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
        functions[id(function)] = function
    for function in functions.values():
        body = function.body
        at = 1 if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) else 0
        where = body[at] if at < len(body) else body[0]
        opened = ast.Assign(targets=[ast.Name(id=_OPEN, ctx=ast.Store())], value=_call("_infratrace_holder"))
        body.insert(at, _located(opened, where))
    return len(calls)
