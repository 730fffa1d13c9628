"""The Flask extension: ``InfraTrace(app)`` or ``InfraTrace().init_app(app)``.

It configures infratrace, validates the options, puts the ``http:`` middleware around
``app.wsgi_app`` and connects the few Flask hooks that know the matched rule, the
endpoint, the unhandled exception and the final response.

Nothing it keeps on the app refers back to the app: Flask frees an app as soon as its
last reference goes, without the garbage collector, and so it does with the extension.
``app.wsgi_app`` as Flask defines it is traced by ``Flask.wsgi_app`` itself (replaced
once, it calls the app's middleware when the app has one, else Flask's own method), so
no wrapper holding the app is stored on the app; a ``wsgi_app`` the app has of its own
(a WSGI middleware installed before the extension, a subclass's override) is wrapped
on the app as before. The app's state and its ``process_response`` wrapper hold the
app weakly (they are only called through the app)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import flask
import flask.signals
from flask import Flask, request

import infratrace
from infratrace import ConfigError, Tracer
from infratrace.instrumentation import WebOptions

from . import _signals
from ._middleware import RequestTrace, TraceMiddleware, current_request
from ._middleware import _request as _request_var
from ._views import is_wrapped, wrap_view

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["APP_CONFIG_KEY", "OPTIONS_CONFIG_KEY", "AppTracing", "InfraTrace"]

APP_CONFIG_KEY = "INFRATRACE"  # infratrace's own configuration (TOML path/string/mapping)
OPTIONS_CONFIG_KEY = "INFRATRACE_FLASK"  # this extension's options
EXTRA_KEYS = ("signals", "signals_exclude")


class AppTracing:
    """Per-application state, kept in ``app.extensions["infratrace"]``."""

    __slots__ = (
        "_app",
        "_lock",
        "middleware",
        "options",
        "request_hook_connected",
        "signals",
        "traced_signal_ids",
        "views_wrapped",
    )

    def __init__(self, app: Flask, options: WebOptions, signals: tuple[_signals.TracedSignal, ...]) -> None:
        self._app = weakref.ref(app)
        # The http: middleware Flask.wsgi_app calls for this app (None: it is wrapped
        # around the app's own wsgi_app attribute instead).
        self.middleware: TraceMiddleware | None = None
        self.options = options
        self.signals = signals
        self.traced_signal_ids = frozenset(id(traced.signal) for traced in signals)
        self.views_wrapped = False
        self.request_hook_connected = False
        self._lock = threading.Lock()

    @property
    def app(self) -> Flask | None:
        """The app (held weakly: None once it is gone)."""
        return self._app()

    def wrap_views(self) -> None:
        """Give every view its ``web:`` wrapper, once, at the first request: routes
        cannot be added after it (Flask raises), so none is missed, and no hook has to
        look for unwrapped views on every request."""
        with self._lock:
            if self.views_wrapped:
                return
            try:
                app = self.app
                views = app.view_functions if app is not None else {}
                for endpoint, view in list(views.items()):
                    if not is_wrapped(view):
                        views[endpoint] = wrap_view(view, endpoint, self.options.service)
            except Exception:
                pass
            self.views_wrapped = True

    @property
    def service(self) -> str:
        return self.options.service

    def update(self, options: WebOptions, signals: tuple[_signals.TracedSignal, ...]) -> None:
        self.options = options
        self.signals = signals
        self.traced_signal_ids = frozenset(id(traced.signal) for traced in signals)


class InfraTrace:
    """Trace every request of a Flask app: ``http:<METHOD> <rule>`` (server),
    ``web:<endpoint>`` (the view) and ``event:<signal>`` (signal receivers).

    Options (keyword arguments here or in ``init_app``, or the mapping
    ``app.config["INFRATRACE_FLASK"]``; ``init_app`` keywords win, then the app config,
    then the constructor's): the :class:`infratrace.instrumentation.WebOptions` keys
    (``excluded_paths``, ``request_headers``, ``response_headers``,
    ``sensitive_headers``, ``request_hook``, ``response_hook``,
    ``response_traceparent``, ``span_budget``, ``service``) plus ``signals`` (allow
    list, default :data:`DEFAULT_SIGNALS`) and ``signals_exclude`` (deny list).

    infratrace itself is configured from ``app.config["INFRATRACE"]`` (a TOML file
    path, a TOML string or a mapping of the TOML's shape) when set, else — if nothing
    configured it yet — from ``$INFRATRACE_CONFIG`` (or the defaults)."""

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        self._options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, **options: Any) -> AppTracing:
        """Instrument ``app`` (again: the options are replaced, nothing is wrapped twice).
        Raises :class:`infratrace.ConfigError` naming the bad key."""
        web_options, signals = _load_options(app, {**self._options, **options})
        _configure_tracing(app)
        _signals.install(signals)
        existing = app.extensions.get(_signals.EXTENSION_KEY)
        if isinstance(existing, AppTracing):
            existing.update(web_options, signals)
            _connect_request_hook(app, existing)
            return existing
        tracing = AppTracing(app, web_options, signals)
        app.extensions[_signals.EXTENSION_KEY] = tracing
        if "wsgi_app" not in vars(app) and getattr(type(app), "wsgi_app", None) in (_FLASK_WSGI_APP, _traced_wsgi_app):
            _hook_flask_wsgi_app()
            tracing.middleware = TraceMiddleware(_FlaskWsgiApp(app), tracing)
        else:  # the app's own wsgi_app: wrapped where it is
            app.wsgi_app = TraceMiddleware(app.wsgi_app, tracing)  # type: ignore[method-assign]
        _connect_hooks(app, tracing)
        return tracing


_FLASK_WSGI_APP: Callable[..., Iterable[bytes]] = Flask.wsgi_app


def _traced_wsgi_app(self: Flask, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """``Flask.wsgi_app`` once the extension is used: the app's ``http:`` middleware
    when it has one (which calls Flask's method), else Flask's method."""
    tracing = self.extensions.get(_signals.EXTENSION_KEY)
    middleware = tracing.middleware if type(tracing) is AppTracing else None
    if middleware is None:
        return _FLASK_WSGI_APP(self, environ, start_response)
    return middleware(environ, start_response)


_traced_wsgi_app.__doc__ = _FLASK_WSGI_APP.__doc__
_traced_wsgi_app.__wrapped__ = _FLASK_WSGI_APP  # type: ignore[attr-defined]
_hook_lock = threading.Lock()


def _hook_flask_wsgi_app() -> None:
    with _hook_lock:
        if Flask.__dict__.get("wsgi_app") is _FLASK_WSGI_APP:
            Flask.wsgi_app = _traced_wsgi_app  # type: ignore[method-assign]


class _FlaskWsgiApp:
    """Flask's own ``wsgi_app`` of one app, inside its middleware: it holds the app
    weakly (it is called only through the app, which is alive then)."""

    __slots__ = ("app",)

    def __init__(self, app: Flask) -> None:
        self.app = weakref.ref(app)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return _FLASK_WSGI_APP(self.app(), environ, start_response)


def _load_options(app: Flask, options: Mapping[str, Any]) -> tuple[WebOptions, tuple[_signals.TracedSignal, ...]]:
    from_config = app.config.get(OPTIONS_CONFIG_KEY) or {}
    if not isinstance(from_config, Mapping):
        raise ConfigError(OPTIONS_CONFIG_KEY, from_config, "expected a mapping of options", "app.config")
    merged = {**from_config, **options}
    source = "app.config" if from_config else "InfraTrace()"
    web_options = WebOptions.from_mapping(merged, OPTIONS_CONFIG_KEY, EXTRA_KEYS, source=source)
    try:
        signals = _signals.resolve_signals(
            web_options.extra.get("signals"), web_options.extra.get("signals_exclude"), OPTIONS_CONFIG_KEY
        )
    except ConfigError as exc:
        raise exc.with_source(source) from None
    return web_options, signals


_configured_from: list[Any] = []  # the last app.config["INFRATRACE"] applied


def _configure_tracing(app: Flask) -> None:
    source = app.config.get(APP_CONFIG_KEY)
    if source is None:
        hook = infratrace.get_hook()
        if isinstance(hook, Tracer) and hook.config is None:
            infratrace.configure(None)  # $INFRATRACE_CONFIG: fail at start-up, not at the first span
        return
    if _configured_from and _configured_from[0] == source:
        return  # several apps sharing one configuration: one pipeline
    try:
        infratrace.configure(source)
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.value, exc.expected, f'app.config["{APP_CONFIG_KEY}"] ({exc.source})') from None
    _configured_from[:] = [source]


def _connect_hooks(app: Flask, tracing: AppTracing) -> None:
    _current_request = _request_var.get

    def record_exception(sender: Flask, exception: BaseException, **extra: Any) -> None:
        trace = current_request()
        if trace is not None:
            trace.exc = exception
            _record_route(trace)

    # Flask's process_response (documented as the method to override to modify the
    # response before it is sent; it runs the after_request functions and saves the
    # session) returns the final response, error pages included: the matched rule,
    # whether the body is still to be produced (streamed) or the request is complete,
    # and what the response hook wants. Wrapping it costs one call per request; an
    # after_request function costs Flask an ensure_sync() (inspect's
    # iscoroutinefunction, five more calls) on top of the call itself.
    process_response: Callable[..., flask.Response] = app.process_response
    owner: weakref.ref[Flask] | None = None
    if getattr(process_response, "__self__", None) is app:  # the app's method, kept without the app
        process_response, owner = process_response.__func__, weakref.ref(app)  # type: ignore[attr-defined]

    def traced_process_response(response: flask.Response) -> flask.Response:
        response = process_response(owner(), response) if owner is not None else process_response(response)
        trace = _current_request()
        if trace is not None:
            try:
                if trace.route is None:  # (_record_route, inlined: this runs per request)
                    rule = (_cv_request.get().request if _cv_request is not None else _flask_request()).url_rule
                    if rule is not None:
                        trace.set_route(rule.rule)
                # An error page made from an exception (werkzeug's HTTPException pages, a
                # 500 handler) comes wrapped in an iterator, so it looks streamed; with its
                # length known it is as complete as any other response.
                trace.streamed = response.is_streamed and not (
                    response.status_code >= 400 and response.content_length is not None
                )
                options = tracing.options
                if options.response_hook is not None:
                    options.run_response_hook(trace.span, request._get_current_object(), response)  # type: ignore[attr-defined]
            except Exception:
                pass
        return response

    app.process_response = traced_process_response  # type: ignore[method-assign]
    # weak=False: the closure lives as long as the app.
    flask.signals.got_request_exception.connect(_signals.mark_internal(record_exception), app, weak=False)
    _connect_request_hook(app, tracing)


def _record_route(trace: RequestTrace) -> None:
    if trace.route is None:
        rule = _current_flask_request().url_rule
        if rule is not None:
            trace.set_route(rule.rule)


def _flask_request() -> flask.Request:
    return request._get_current_object()  # type: ignore[attr-defined,no-any-return]


try:  # Flask >= 2.2: the request context's variable, without the proxy (~0.7 µs less)
    from flask.globals import _cv_request
except ImportError:  # pragma: no cover - other Flask versions
    _cv_request = None  # type: ignore[assignment]


def _current_flask_request() -> flask.Request:
    if _cv_request is not None:
        return _cv_request.get().request
    return _flask_request()


def _connect_request_hook(app: Flask, tracing: AppTracing) -> None:
    # Only for a request hook: a URL value preprocessor runs for every request,
    # matched or not, before any before_request function could answer instead of
    # the view — the earliest documented hook that sees the matched rule.
    if tracing.options.request_hook is None or tracing.request_hook_connected:
        return

    def run_request_hook(endpoint: str | None, values: dict[str, Any] | None) -> None:
        trace = current_request()
        options = tracing.options
        if trace is not None and options.request_hook is not None:
            try:
                _record_route(trace)
                options.run_request_hook(trace.span, request._get_current_object())  # type: ignore[attr-defined]
            except Exception:
                pass

    app.url_value_preprocessor(run_request_hook)
    tracing.request_hook_connected = True
