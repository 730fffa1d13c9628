"""What every client library's instrumentation shares: options and their validation,
the URL's parts (userinfo dropped, query redacted), the span's name and attributes, the
``traceparent`` written into the outgoing headers, the end of the span from a status
or an exception, and the flag that keeps a second instrumented layer (``requests`` over
``urllib3``) from making a second span for the same request.

A library module only translates its request and response objects into these calls:

    span = tracer.start(method, origin, rest, request)   # None: not traced
    tracer.inject(headers, span)                          # when tracer.propagate
    ... the library's own call, with ``in_client`` set ...
    tracer.finish(span, status, version, request, response)   # or tracer.fail(span, exc)

Nothing here raises into the caller: a failure while tracing leaves the request
untraced (or its span ended as it stands) and the request goes on unchanged."""

from __future__ import annotations

import fnmatch
import re
import threading
from collections.abc import Callable, Iterable, MutableMapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import unquote

import infratrace
from infratrace import ConfigError
from infratrace.instrumentation import (
    DEFAULT_SENSITIVE_QUERY_KEYS,
    AnySpan,
    begin,
    current_span,
    in_pipeline,
    normalize_method,
    redact_query,
)

__all__ = [
    "ClientOptions",
    "ClientTracer",
    "Instrumentation",
    "Origin",
    "Patch",
    "RequestHook",
    "ResponseHook",
    "clean_rest",
    "full_url",
    "in_client",
    "origin_of",
    "protocol_version",
    "route",
    "split_url",
    "status_and_version",
    "untraced",
    "with_context",
]

RequestHook = Callable[[AnySpan, Any], None]
ResponseHook = Callable[[AnySpan, Any, Any], None]

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
MAX_CACHED = 1024  # origins, names, exclusion decisions: bounded, cleared when full

# True while a client span of ours (or an excluded request) is being sent in this
# context: an instrumented library that another instrumented library calls (urllib3
# under requests) sends the request as it is, without a second span.
in_client: ContextVar[bool] = ContextVar("infratrace_http_in_client", default=False)
_route: ContextVar[str | None] = ContextVar("infratrace_http_route", default=None)


class route:
    """The URL template of the requests sent inside the block, appended to their span
    names and recorded as ``url.template``::

        with infratrace_http.route("/users/{id}"):
            client.get(f"https://api.example.com/users/{user_id}")
        # span: client:GET api.example.com /users/{id}

    Works with every instrumented library, in threads and asyncio tasks alike (a
    context variable); blocks nest, the innermost wins."""

    __slots__ = ("_token", "template")

    def __init__(self, template: str) -> None:
        if not isinstance(template, str) or not template:
            raise ConfigError("infratrace_http.route(template)", template, 'expected a non-empty template, e.g. "/users/{id}"')
        self.template = template
        self._token: Token[str | None] | None = None

    def __enter__(self) -> route:
        self._token = _route.set(self.template)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        token = self._token
        if token is not None:
            self._token = None
            try:
                _route.reset(token)
            except ValueError:  # left in another context than entered: undo there only
                _route.set(None)

    async def __aenter__(self) -> route:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.__exit__(exc_type, exc, tb)


class untraced:
    """No span and no propagated headers for the requests sent inside the block, with
    any instrumented library — for code that must never be traced, such as a custom
    infratrace driver that sends its batches over HTTP with ``requests`` or ``httpx``
    (a driver's ``write`` may run on the application's thread during a flush)::

        with infratrace_http.untraced():
            session.post(endpoint, data=payload)
    """

    __slots__ = ("_token",)

    def __init__(self) -> None:
        self._token: Token[bool] | None = None

    def __enter__(self) -> untraced:
        self._token = in_client.set(True)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        token = self._token
        if token is not None:
            self._token = None
            try:
                in_client.reset(token)
            except ValueError:
                in_client.set(False)

    async def __aenter__(self) -> untraced:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.__exit__(exc_type, exc, tb)


# -- URLs ---------------------------------------------------------------------------------


class Origin:
    """Scheme, host and port of a request, computed once per distinct origin: what the
    span's name and ``server.*``/``url.scheme`` attributes need, and the start of
    ``url.full`` (userinfo removed)."""

    __slots__ = ("address", "attributes", "label", "match", "names", "port", "prefix", "scheme")

    def __init__(self, scheme: str, host: str, port: int | None) -> None:
        scheme = scheme.lower()
        if "%" in host:  # http+unix://%2Fvar%2Frun%2Fdocker.sock: the socket's path
            host = unquote(host)
        default = DEFAULT_PORTS.get(scheme)
        self.scheme = scheme
        self.address = host
        self.port = port if port is not None else default
        bracketed = f"[{host}]" if ":" in host and not host.startswith("/") else host
        self.label = f"{bracketed}:{port}" if port is not None and port != default else bracketed
        netloc = f"{bracketed}:{port}" if port is not None else bracketed
        self.prefix = f"{scheme}://{netloc}" if scheme or netloc else ""  # httpx sends a relative URL as is
        lowered = host.lower()
        self.match = (lowered, f"{bracketed.lower()}:{self.port}") if self.port is not None else (lowered,)
        attrs: dict[str, Any] = {}
        if host:
            attrs["server.address"] = host
        if self.port is not None:
            attrs["server.port"] = self.port
        if scheme:
            attrs["url.scheme"] = scheme
        self.attributes = attrs
        # method as sent -> (normalized method, span name without a template)
        self.names: dict[str, tuple[str, str]] = {}

    def name(self, method: str, template: str | None) -> tuple[str, str]:
        """The normalized method and the span's name."""
        normalized = normalize_method(method)
        name = f"client:{normalized} {self.label}" if self.label else f"client:{normalized}"
        if template:
            return normalized, f"{name} {template}"
        if len(self.names) < 32:  # a handful of methods; bounded against odd ones
            self.names[method] = (normalized, name)
        return normalized, name

    def __repr__(self) -> str:
        return f"Origin({self.prefix!r})"


_origins: dict[Any, Origin] = {}


def origin_of(scheme: str, host: str, port: int | None) -> Origin:
    """The :class:`Origin` of already separated parts (httpx's URL, urllib3's pool)."""
    key = (scheme, host, port)
    origin = _origins.get(key)
    if origin is None:
        origin = Origin(scheme, host, port)
        if len(_origins) >= MAX_CACHED:
            _origins.clear()
        _origins[key] = origin
    return origin


_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)")


def _netloc_origin(scheme: str, netloc: str) -> Origin:
    hostport = netloc.rpartition("@")[2]  # userinfo is never recorded
    port: int | None = None
    if hostport.startswith("["):  # an IPv6 literal: [::1]:8000
        host, _, after = hostport[1:].partition("]")
        if after.startswith(":") and after[1:].isdigit():
            port = int(after[1:])
    else:
        host, sep, port_text = hostport.rpartition(":")
        if sep and port_text.isdigit():
            port = int(port_text)
        elif sep and not port_text:  # "host:" — an empty port is the default
            pass
        else:
            host = hostport
    return Origin(scheme, host, port)


def split_url(url: str) -> tuple[Origin, str] | None:
    """``(origin, path and query)`` of an absolute URL, the fragment dropped; ``None``
    for anything else (a relative URL, no scheme)."""
    match = _URL.match(url)
    if match is None:
        return None
    end = match.end()
    key = url[:end]
    origin = _origins.get(key)
    if origin is None:
        origin = _netloc_origin(match.group(1), match.group(2))
        if len(_origins) >= MAX_CACHED:
            _origins.clear()
        _origins[key] = origin
    return origin, url[end:]


_SENSITIVE = tuple(DEFAULT_SENSITIVE_QUERY_KEYS)


def full_url(origin: Origin, rest: str) -> str:
    """``url.full``: the origin (userinfo removed) and :func:`clean_rest` of the rest.
    Not cached: a query string may carry a secret, which must not outlive the request."""
    return origin.prefix + clean_rest(rest)


def clean_rest(rest: str) -> str:
    """The path and query for ``url.full``: without the fragment (never sent), and with
    the values of sensitive query parameters (``token``, ``key``, ``signature``, …)
    replaced by ``[REDACTED]``."""
    if "#" in rest:
        rest = rest.partition("#")[0]
    if "?" not in rest:
        return rest
    path, _, query = rest.partition("?")
    if "%" in query or "+" in query:  # an encoded name may hide a sensitive word
        return f"{path}?{redact_query(query)}"
    lowered = query.lower()
    for word in _SENSITIVE:
        if word in lowered:
            return f"{path}?{redact_query(query)}"
    return rest


_VERSIONS: dict[Any, str] = {
    10: "1.0",
    11: "1.1",
    20: "2",
    30: "3",
    9: "0.9",
    b"HTTP/1.1": "1.1",
    b"HTTP/1.0": "1.0",
    b"HTTP/2": "2",
    b"HTTP/2.0": "2",
    b"HTTP/3": "3",
    "HTTP/1.1": "1.1",
    "HTTP/1.0": "1.0",
    "HTTP/2": "2",
    "HTTP/3": "3",
}


def protocol_version(value: Any) -> str | None:
    """``network.protocol.version`` from what a library reports: ``11`` (http.client,
    urllib3), ``b"HTTP/1.1"`` (httpx); ``None`` when unknown."""
    try:
        return _VERSIONS.get(value)
    except TypeError:  # unhashable
        return None


# -- options --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientOptions:
    """The options every library's ``instrument()`` takes, validated."""

    excluded_hosts: tuple[str, ...] = ()
    root_spans: bool = False
    request_hook: RequestHook | None = None
    response_hook: ResponseHook | None = None
    propagate: bool = True

    @classmethod
    def validate(
        cls,
        function: str,
        *,
        excluded_hosts: str | Iterable[str],
        root_spans: bool,
        request_hook: RequestHook | None,
        response_hook: ResponseHook | None,
        propagate: bool,
    ) -> ClientOptions:
        """``function``: how the caller names ``instrument`` in an error
        (``infratrace_http.httpx.instrument``); the key is ``<function>(<option>)``."""
        return cls(
            excluded_hosts=_hosts(excluded_hosts, f"{function}(excluded_hosts)"),
            root_spans=_bool(root_spans, f"{function}(root_spans)"),
            request_hook=_callable(request_hook, f"{function}(request_hook)", "(span, request)"),
            response_hook=_callable(response_hook, f"{function}(response_hook)", "(span, request, response)"),
            propagate=_bool(propagate, f"{function}(propagate)"),
        )


_HOST_HELP = 'expected a host name or glob pattern, or a list of them, e.g. ["*.internal", "127.0.0.1:9200"]'


def _hosts(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise ConfigError(key, value, _HOST_HELP)
    out = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip() or any(c.isspace() or c in "/#@" for c in item):
            raise ConfigError(f"{key}[{index}]", item, "expected a host name, host:port or a glob pattern of them (* ? [..])")
        out.append(item.strip().lower())
    return tuple(out)


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, value, "expected True or False")
    return value


def _callable(value: Any, key: str, signature: str) -> Any:
    if value is not None and not callable(value):
        raise ConfigError(key, value, f"expected None or a callable taking {signature}")
    return value


# -- spans ------------------------------------------------------------------------------------


def _glob(pattern: str) -> str:
    """A host pattern as a regular expression: shell-style (``*``, ``?``, ``[..]``),
    except that an IPv6 literal's brackets are literal (``[::1]:9000``)."""
    if pattern.startswith("[") and "]" in pattern:
        literal, _, tail = pattern[1:].partition("]")
        if ":" in literal:
            return re.escape(f"[{literal}]") + (fnmatch.translate(tail) if tail else r"\Z")
    return fnmatch.translate(pattern)


class ClientTracer:
    """One library's instrumentation state: its options and its exclusion decisions
    (per origin)."""

    __slots__ = ("_excluded", "_patterns", "library", "options", "propagate", "request_hook", "response_hook", "root_spans")

    def __init__(self, library: str, options: ClientOptions) -> None:
        self.library = library
        self.options = options
        self.root_spans = options.root_spans
        self.propagate = options.propagate
        self.request_hook = options.request_hook
        self.response_hook = options.response_hook
        patterns = "|".join(f"(?:{_glob(host)})" for host in options.excluded_hosts)
        self._patterns = re.compile(patterns) if patterns else None
        self._excluded: dict[Origin, bool] = {}

    def excluded(self, origin: Origin) -> bool:
        patterns = self._patterns
        if patterns is None:
            return False
        known = self._excluded.get(origin)
        if known is None:
            known = any(patterns.match(text) is not None for text in origin.match)
            if len(self._excluded) >= MAX_CACHED:
                self._excluded.clear()
            self._excluded[origin] = known
        return known

    def start(self, method: str, origin: Origin, rest: str, request: Any, template: Any = None) -> AnySpan | None:
        """Begin the client span of one request (it becomes the current span), or
        ``None`` when the request is not traced: its host is excluded, or there is no
        current span and ``root_spans`` is off, or a driver of infratrace's is writing
        (on its connection's thread, or on the application's during a flush).
        ``template``: the request's own URL template (httpx's request extension), else
        the one of the enclosing :class:`route` block."""
        try:
            if in_pipeline() or (current_span() is None and not self.root_spans):
                return None
            if self._patterns is not None and self.excluded(origin):
                return None
            if not (template and template.__class__ is str):
                template = _route.get()
            if template is None:
                known = origin.names.get(method)
                normalized, name = known if known is not None else origin.name(method, None)
            else:
                normalized, name = origin.name(method, template)
            url = full_url(origin, rest)
            # The origin's attributes are shared: begin() copies them, and the
            # request's own are set on the span's copy.
            span = begin(name, origin.attributes, kind="client")
        except Exception:
            return None
        try:
            attributes = span.attributes  # a recording span's own dict (a throwaway one otherwise)
            attributes["http.request.method"] = normalized
            if normalized != method:
                attributes["http.request.method_original"] = method
            attributes["url.full"] = url
            if template is not None:
                attributes["url.template"] = template
        except Exception:
            pass
        hook = self.request_hook
        if hook is not None:
            try:
                hook(span, request)
            except Exception as exc:  # a user hook must not break the request
                _hook_error(span, "request_hook", exc)
        return span

    def inject(self, carrier: MutableMapping[str, Any], span: AnySpan) -> None:
        """``traceparent`` (and ``tracestate``, and whatever else
        :func:`infratrace.inject` propagates) of ``span`` into the outgoing headers,
        replacing values the caller set."""
        try:
            infratrace.inject(carrier, span)
        except Exception:
            pass

    def call(
        self,
        span: AnySpan | None,
        request: Any,
        facts: Callable[[Any], tuple[Any, Any]],
        restore: Callable[[], None] | None,
        function: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """Run the library's own ``function(*args, **kwargs)`` with ``in_client`` set
        (an instrumented library under it sends as is), then end ``span`` (when there is
        one) from the response — ``facts(response)``: its status and protocol version —
        or from the exception, which is re-raised unchanged. ``restore`` undoes what was
        changed on the caller's request, before the span ends."""
        token = in_client.set(True)
        try:
            response = function(*args, **kwargs)
        except BaseException as exc:
            in_client.reset(token)
            if restore is not None:
                restore()
            if span is not None:
                self.fail(span, exc)
            raise
        in_client.reset(token)
        if restore is not None:
            restore()
        if span is not None:
            self.returned(span, request, response, facts)
        return response

    def returned(self, span: AnySpan, request: Any, response: Any, facts: Callable[[Any], tuple[Any, Any]]) -> None:
        """End ``span`` from the response the library returned."""
        status = version = None
        try:
            status, version = facts(response)
        except Exception:
            pass
        self.finish(span, status, version, request, response)

    def finish(self, span: AnySpan, status: int | None, version: str | None, request: Any, response: Any) -> None:
        """The response arrived: its status (4xx and 5xx are errors on a client span)."""
        try:
            attributes = span.attributes  # a recording span's own dict (a throwaway one otherwise)
            if status is not None:
                attributes["http.response.status_code"] = status
                if status >= 400:
                    attributes["error.type"] = str(status)
            if version is not None:
                attributes["network.protocol.version"] = version
        except Exception:
            pass
        hook = self.response_hook
        if hook is not None:
            try:
                hook(span, request, response)
            except Exception as exc:
                _hook_error(span, "response_hook", exc)
        try:
            if status.__class__ is int:
                span.end(code=status)
            else:
                span.end()
        except Exception:
            pass

    def fail(self, span: AnySpan, exc: BaseException) -> None:
        """The request raised (connection refused, timeout, cancelled): the span is an
        error with the exception recorded; the caller re-raises it unchanged."""
        try:
            span.set_attribute("error.type", type(exc).__qualname__)
            span.end(exc)
        except Exception:
            try:
                span.end()
            except Exception:
                pass


def status_and_version(response: Any) -> tuple[Any, Any]:
    """An ``http.client``-style response's (urllib3's, urllib's) status and protocol
    version."""
    return response.status, protocol_version(response.version)


def with_context(headers: Any, span: AnySpan) -> Any:
    """A copy of ``headers`` (a mapping or ``None``) with what :func:`infratrace.inject`
    writes for ``span`` (``traceparent``, ``tracestate``, …), replacing the caller's
    values whatever their case; the caller's mapping is left as it was. A
    case-insensitive mapping type with a ``copy()`` (urllib3's ``HTTPHeaderDict``)
    is copied as itself, anything else into a ``dict``."""
    try:
        injected: dict[str, Any] = {}
        infratrace.inject(injected, span)  # lower-case names
        if not injected or not headers:
            return injected or headers
        if headers.__class__ is not dict and hasattr(headers, "copy") and hasattr(headers, "getlist"):
            out = headers.copy()
            for key, value in injected.items():
                out[key] = value  # HTTPHeaderDict: replaces any case of the name
            return out
        out = {key: value for key, value in headers.items() if key.__class__ is not str or key.lower() not in injected}
        out.update(injected)
        return out
    except Exception:
        return headers


class Patch:
    """One method of a library class replaced by our wrapper while instrumented.

    ``remove()`` puts the original back when the class still holds our wrapper. When
    another instrumentation wrapped it meanwhile (OpenTelemetry's, say), ours stays
    underneath that one — removing it would remove the other too — and the library
    module's wrapper passes every call straight through (its tracer is ``None``); a
    later ``install()`` then only switches it back on. The original is captured once,
    so our wrapper never ends up calling itself."""

    __slots__ = ("_buried", "_own", "name", "original", "owner", "wrapper")

    def __init__(self, owner: type, name: str, wrapper: Callable[..., Any]) -> None:
        self.owner = owner
        self.name = name
        self.wrapper = wrapper
        self.original: Callable[..., Any] = getattr(owner, name)
        self._own = name in vars(owner)  # else inherited: removed again, not set
        self._buried = False

    def install(self) -> None:
        current = vars(self.owner).get(self.name)
        if current is self.wrapper or self._buried:
            return
        self.original = getattr(self.owner, self.name)
        self._own = current is not None
        setattr(self.owner, self.name, self.wrapper)

    def remove(self) -> None:
        if vars(self.owner).get(self.name) is self.wrapper:
            if self._own:
                setattr(self.owner, self.name, self.original)
            else:
                delattr(self.owner, self.name)
            self._buried = False
        else:
            self._buried = True


class Instrumentation:
    """A library module's ``instrument()``/``uninstrument()``: the options validated,
    the library imported and its methods patched only when ``instrument()`` runs.
    ``targets()`` returns ``(class, method name, wrapper)`` for each method to patch;
    each wrapper reads :attr:`tracer` (``None``: pass through) and calls
    :meth:`original`."""

    __slots__ = ("_lock", "_patches", "_targets", "library", "tracer")

    def __init__(self, library: str, targets: Callable[[], Iterable[tuple[type, str, Callable[..., Any]]]]) -> None:
        self.library = library
        self.tracer: ClientTracer | None = None
        self._targets = targets
        self._patches: dict[str, Patch] = {}
        self._lock = threading.Lock()

    def original(self, name: str) -> Callable[..., Any]:
        return self._patches[name].original

    def instrument(
        self,
        *,
        excluded_hosts: str | Iterable[str],
        root_spans: bool,
        request_hook: RequestHook | None,
        response_hook: ResponseHook | None,
        propagate: bool,
    ) -> None:
        options = ClientOptions.validate(
            f"infratrace_http.{self.library}.instrument",
            excluded_hosts=excluded_hosts,
            root_spans=root_spans,
            request_hook=request_hook,
            response_hook=response_hook,
            propagate=propagate,
        )
        with self._lock:
            if not self._patches:
                self._patches = {name: Patch(owner, name, wrapper) for owner, name, wrapper in self._targets()}
            self.tracer = ClientTracer(self.library, options)
            for patch in self._patches.values():
                patch.install()

    def uninstrument(self) -> None:
        with self._lock:
            if self.tracer is None:
                return
            self.tracer = None
            for patch in self._patches.values():
                patch.remove()


def _hook_error(span: AnySpan, which: str, exc: Exception) -> None:
    try:
        span.set_attribute("infratrace.hook_error", f"{which}: {type(exc).__name__}: {exc}")
    except Exception:
        pass
