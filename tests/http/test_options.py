"""``instrument()`` options validated (a ``ConfigError`` naming the option, the value and
what is valid), and the pure parts: URL splitting, ``url.full``, span names and
exclusion patterns."""

from __future__ import annotations

import importlib
from typing import Any

import infratrace_http
import pytest
from infratrace_http._client import ClientOptions, ClientTracer, clean_rest, origin_of, protocol_version, split_url

from infratrace import ConfigError

LIBRARIES = ("httpx", "requests", "urllib3", "urllib")


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize(
    ("option", "value", "key", "expected"),
    [
        ("excluded_hosts", 42, "excluded_hosts", "a host name or glob pattern"),
        ("excluded_hosts", ["ok.example.com", 7], "excluded_hosts[1]", "a host name, host:port or a glob pattern"),
        ("excluded_hosts", ["http://api.example.com"], "excluded_hosts[0]", "a host name, host:port"),
        ("excluded_hosts", [" "], "excluded_hosts[0]", "a host name"),
        ("root_spans", "yes", "root_spans", "True or False"),
        ("propagate", 1, "propagate", "True or False"),
        ("request_hook", "mod:fn", "request_hook", "a callable taking (span, request)"),
        ("response_hook", 3, "response_hook", "a callable taking (span, request, response)"),
    ],
)
def test_bad_options(library: str, option: str, value: Any, key: str, expected: str) -> None:
    module = importlib.import_module(f"infratrace_http.{library}")
    with pytest.raises(ConfigError) as raised:
        module.instrument(**{option: value})
    error = raised.value
    base, _, index = key.partition("[")
    assert error.key == f"infratrace_http.{library}.instrument({base})" + (f"[{index}" if index else "")
    assert error.value == (value if not index else value[int(index[:-1])])
    assert expected in str(error)
    assert f"instrument({base})" in str(error)
    assert not module.is_instrumented()


def test_route_needs_a_template() -> None:
    with pytest.raises(ConfigError, match=r"route\(template\)"):
        infratrace_http.route("")


@pytest.mark.parametrize(
    ("url", "prefix", "address", "port", "label", "rest"),
    [
        ("https://api.example.com/users/7", "https://api.example.com", "api.example.com", 443, "api.example.com", "/users/7"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000", "127.0.0.1", 8000, "127.0.0.1:8000", ""),
        ("http://host:80/x", "http://host:80", "host", 80, "host", "/x"),
        (
            "HTTPS://user:pa%40ss@Host.example:8443/p?q=1",
            "https://Host.example:8443",
            "Host.example",
            8443,
            "Host.example:8443",
            "/p?q=1",
        ),
        ("http://[::1]:9000/a", "http://[::1]:9000", "::1", 9000, "[::1]:9000", "/a"),
        ("http://[2001:db8::1]/a", "http://[2001:db8::1]", "2001:db8::1", 80, "[2001:db8::1]", "/a"),
        (
            "http+unix://%2Fvar%2Frun%2Fdocker.sock/info",
            "http+unix:///var/run/docker.sock",
            "/var/run/docker.sock",
            None,
            "/var/run/docker.sock",
            "/info",
        ),
        ("http:///x", "http://", "", 80, "", "/x"),
        ("http://host:/x", "http://host", "host", 80, "host", "/x"),
    ],
)
def test_split_url(url: str, prefix: str, address: str, port: int | None, label: str, rest: str) -> None:
    parts = split_url(url)
    assert parts is not None
    origin, tail = parts
    assert (origin.prefix, origin.address, origin.port, origin.label, tail) == (prefix, address, port, label, rest)
    assert "user" not in origin.prefix and "pa%40ss" not in origin.prefix


@pytest.mark.parametrize("url", ["/relative", "example.com/x", "", "mailto:someone@example.com"])
def test_not_absolute_urls_are_not_split(url: str) -> None:
    assert split_url(url) is None


@pytest.mark.parametrize(
    ("rest", "cleaned"),
    [
        ("/a", "/a"),
        ("/a#frag", "/a"),
        ("/a?x=1&y=2", "/a?x=1&y=2"),
        ("/a?api_key=abc&x=1#f", "/a?api_key=[REDACTED]&x=1"),
        ("/a?Signature=abc&X-Amz-Credential=c", "/a?Signature=[REDACTED]&X-Amz-Credential=c"),
        ("/a?%74oken=abc", "/a?%74oken=[REDACTED]"),
        ("/a?monkey=1", "/a?monkey=[REDACTED]"),
        ("/a?page=token", "/a?page=token"),
    ],
)
def test_url_full_redacts_the_query_and_drops_the_fragment(rest: str, cleaned: str) -> None:
    assert clean_rest(rest) == cleaned


@pytest.mark.parametrize(
    ("patterns", "origin", "excluded"),
    [
        (["api.example.com"], ("https", "api.example.com", None), True),
        (["API.Example.com"], ("https", "api.EXAMPLE.com", None), True),
        (["*.example.com"], ("https", "api.example.com", None), True),
        (["*.example.com"], ("https", "example.com", None), False),
        (["api.example.com:443"], ("https", "api.example.com", None), True),
        (["api.example.com:8443"], ("https", "api.example.com", None), False),
        (["[::1]:9000"], ("http", "::1", 9000), True),
        (["::1"], ("http", "::1", 9000), True),
        (["10.0.0.?"], ("http", "10.0.0.7", 80), True),
        (["10.0.0.?"], ("http", "10.0.0.77", 80), False),
    ],
)
def test_excluded_hosts_patterns(patterns: list[str], origin: tuple[str, str, int | None], excluded: bool) -> None:
    options = ClientOptions.validate(
        "t", excluded_hosts=patterns, root_spans=False, request_hook=None, response_hook=None, propagate=True
    )
    assert ClientTracer("t", options).excluded(origin_of(*origin)) is excluded


@pytest.mark.parametrize(
    ("reported", "version"),
    [(11, "1.1"), (10, "1.0"), (20, "2"), (b"HTTP/1.1", "1.1"), (b"HTTP/2", "2"), (None, None), ([], None), (99, None)],
)
def test_protocol_version(reported: Any, version: str | None) -> None:
    assert protocol_version(reported) == version
