"""Decorators that make every call of a function a child span: ``traced`` and the
automatic names ``service:<key>``, ``method:<key>``, ``trigger:<key>``.

Sync functions, coroutines, generators and async generators are all supported. A
generator's span stays open across its yields but is the current span only while the
generator body runs, so the consumer's own spans are never parented to it."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from typing import Any, TypeVar, overload

import infratrace

from ._span import INTERNAL, NonRecordingSpan, Span, _current

__all__ = ["method", "service", "traced", "trigger"]

F = TypeVar("F", bound=Callable[..., Any])
MAX_ARG_REPR = 256


def _arg_attrs(signature: inspect.Signature | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    if signature is None:
        return {}
    try:
        bound = signature.bind_partial(*args, **kwargs)
    except TypeError:
        return {}
    out: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            out[f"code.arg.{name}"] = value if not isinstance(value, str) else value[:MAX_ARG_REPR]
        else:
            try:
                out[f"code.arg.{name}"] = repr(value)[:MAX_ARG_REPR]
            except Exception:
                out[f"code.arg.{name}"] = f"<{type(value).__name__}>"
    return out


def _end(span: Span | NonRecordingSpan, exc: BaseException | None) -> None:
    # A replacement hook's span may fail on end(); the decorated function's own
    # result or exception must still be what the caller sees.
    try:
        span.end(exc)
    except Exception:
        pass


def traced(
    name: str,
    attrs: Mapping[str, Any] | None = None,
    *,
    kind: str | None = None,
    record_args: bool = False,
) -> Callable[[F], F]:
    """Decorate a function so each call is a span named ``name`` (a child of whatever
    is current). Arguments are recorded (as ``code.arg.<name>``, truncated reprs) only
    with ``record_args=True``. An exception marks the span as an error and is re-raised
    unchanged."""

    def decorate(func: F) -> F:
        base = dict(attrs or {})
        base.setdefault("module", getattr(func, "__module__", "") or "")
        base.setdefault("operation", getattr(func, "__qualname__", "") or "")
        signature = inspect.signature(func) if record_args else None

        def start(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Span | NonRecordingSpan:
            span_attrs = {**base, **_arg_attrs(signature, args, kwargs)} if record_args else base
            try:
                return infratrace.start_span(name, span_attrs, kind=kind)  # the installed hook's (C when built)
            except Exception:
                return NonRecordingSpan(name, _current.get(), make_current=False)

        if inspect.isasyncgenfunction(func):
            return functools.wraps(func)(_async_gen_wrapper(func, start))  # type: ignore[return-value]
        if inspect.isgeneratorfunction(func):
            return functools.wraps(func)(_gen_wrapper(func, start))  # type: ignore[return-value]
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                span = start(args, kwargs)
                token = _current.set(span)
                try:
                    result = await func(*args, **kwargs)
                except BaseException as exc:
                    _current.reset(token)
                    _end(span, exc)
                    raise
                _current.reset(token)
                _end(span, None)
                return result

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            span = start(args, kwargs)
            token = _current.set(span)
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                _current.reset(token)
                _end(span, exc)
                raise
            _current.reset(token)
            _end(span, None)
            return result

        return wrapper  # type: ignore[return-value]

    return decorate


StartSpan = Callable[[tuple[Any, ...], dict[str, Any]], "Span | NonRecordingSpan"]


def _gen_wrapper(func: Callable[..., Generator[Any, Any, Any]], start: StartSpan) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        span = start(args, kwargs)
        token = _current.set(span)
        try:
            gen = func(*args, **kwargs)
        except BaseException as exc:
            _current.reset(token)
            _end(span, exc)
            raise
        _current.reset(token)
        send: Any = None
        throw: BaseException | None = None
        while True:
            token = _current.set(span)
            try:
                if throw is not None:
                    thrown, throw = throw, None
                    item = gen.throw(thrown)
                else:
                    item = gen.send(send)
            except StopIteration as stop:
                _current.reset(token)
                _end(span, None)
                return stop.value
            except BaseException as exc:
                _current.reset(token)
                _end(span, exc)
                raise
            _current.reset(token)
            try:
                send = yield item
            except GeneratorExit:
                token = _current.set(span)
                try:
                    gen.close()
                finally:
                    _current.reset(token)
                    _end(span, None)
                raise
            except BaseException as exc:
                throw = exc

    return wrapper


def _async_gen_wrapper(func: Callable[..., AsyncGenerator[Any, Any]], start: StartSpan) -> Callable[..., Any]:
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        span = start(args, kwargs)
        token = _current.set(span)
        try:
            agen = func(*args, **kwargs)
        finally:
            _current.reset(token)
        send: Any = None
        throw: BaseException | None = None
        while True:
            token = _current.set(span)
            try:
                if throw is not None:
                    thrown, throw = throw, None
                    item = await agen.athrow(thrown)
                else:
                    item = await agen.asend(send)
            except StopAsyncIteration:
                _current.reset(token)
                _end(span, None)
                return
            except BaseException as exc:
                _current.reset(token)
                _end(span, exc)
                raise
            _current.reset(token)
            try:
                send = yield item
            except GeneratorExit:
                token = _current.set(span)
                try:
                    await agen.aclose()
                finally:
                    _current.reset(token)
                    _end(span, None)
                raise
            except BaseException as exc:
                throw = exc

    return wrapper


def _named(prefix: str, entry_kind: str) -> Callable[..., Any]:
    @overload
    def decorator(key: F) -> F: ...

    @overload
    def decorator(
        key: str | None = None,
        attrs: Mapping[str, Any] | None = None,
        *,
        kind: str | None = None,
        record_args: bool = False,
    ) -> Callable[[F], F]: ...

    def decorator(
        key: str | Callable[..., Any] | None = None,
        attrs: Mapping[str, Any] | None = None,
        *,
        kind: str | None = None,
        record_args: bool = False,
    ) -> Any:
        if callable(key):  # used bare: @infratrace.method
            func = key
            return decorator(f"{func.__module__}.{func.__qualname__}")(func)

        def decorate(func: F) -> F:
            name_key = key or f"{func.__module__}.{func.__qualname__}"
            span_attrs = {"kind": entry_kind, "target": name_key, **(attrs or {})}
            return traced(f"{prefix}:{name_key}", span_attrs, kind=kind or INTERNAL, record_args=record_args)(func)

        return decorate

    decorator.__name__ = entry_kind
    decorator.__doc__ = (
        f'``@infratrace.{entry_kind}("key")``: every call of the function is a '
        f"``{prefix}:<key>`` child span (key defaults to ``module.qualname``). "
        "Arguments are recorded only with ``record_args=True``; exceptions mark the span "
        'as an error and propagate unchanged. ``kind="client"`` for remote calls.'
    )
    return decorator


service = _named("service", "service")
method = _named("method", "method")
trigger = _named("trigger", "trigger")
