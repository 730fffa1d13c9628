"""``web:<endpoint>`` spans: the view function itself, as a child of ``http:``.

Flask has no hook around the view call, so the extension replaces an endpoint's entry
in ``app.view_functions`` with a wrapper the first time a traced request reaches it
(routes cannot change after the first request). The wrapper begins a span only
inside a traced request, so excluded paths and untraced calls cost one lookup."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from werkzeug.exceptions import HTTPException

import infratrace
from infratrace.instrumentation import AnySpan

from ._middleware import _request

__all__ = ["is_wrapped", "wrap_view"]

_MARK = "_infratrace_view"


def is_wrapped(view: Callable[..., Any]) -> bool:
    return hasattr(view, _MARK)


def wrap_view(view: Callable[..., Any], endpoint: str, service: str) -> Callable[..., Any]:
    """A wrapper that runs ``view`` inside a ``web:<endpoint>`` span (sync or async
    views; Flask's ``ensure_sync`` still sees a coroutine function for async ones)."""
    name = f"web:{endpoint}"
    func = inspect.unwrap(view)
    module = getattr(func, "__module__", None) or ""
    attrs = infratrace.trace_attrs(
        service, "web", endpoint, {"module": module, "operation": getattr(func, "__qualname__", endpoint)}
    )
    if not service:
        # Rebuilt, not ``del``-ed: begin() copies the attributes with dict(attrs), which
        # clones the table only when it has no deleted slots (else inserts key by key).
        attrs = {key: value for key, value in attrs.items() if key != "service"}

    traced = _request.get  # the traced request, or None

    wrapper: Callable[..., Any]
    if inspect.iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            if traced() is None:
                return await view(*args, **kwargs)
            span = infratrace.begin(name, attrs, kind="internal")
            try:
                result = await view(*args, **kwargs)
            except BaseException as exc:
                _end_failed(span, exc)
                raise
            span.end()
            return result

        wrapper = async_wrapper
    else:

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if traced() is None:
                return view(*args, **kwargs)
            span = infratrace.begin(name, attrs, kind="internal")
            try:
                result = view(*args, **kwargs)
            except BaseException as exc:
                _end_failed(span, exc)
                raise
            span.end()
            return result

    setattr(wrapper, _MARK, True)
    return wrapper


def _end_failed(span: AnySpan, exc: BaseException) -> None:
    # abort(404) & co. are answers, not failures: keep the span ok with the code.
    code = exc.code if isinstance(exc, HTTPException) else None
    if code is not None and code < 500:
        span.end(code=code)
    else:
        span.end(exc, code=code)
