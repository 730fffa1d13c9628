"""One HTTP POST with bounded retries, shared by the ``otlp`` and ``greptime`` drivers.

Retry rules follow the OTLP/HTTP specification, which GreptimeDB's HTTP API fits too:
429, 502, 503 and 504 and connection failures are transient and retried with
exponential back-off and full jitter, honouring ``Retry-After``; every other status
fails at once. All attempts of one batch share one deadline (the driver's
``timeout``), so a dead or slow destination holds its runner thread for at most that
long, and the batch is then dropped (the pipeline counts it).

Standard library only (``http.client``): one kept-alive connection per driver,
used by one runner thread at a time.
"""

from __future__ import annotations

import base64
import email.utils
import gzip
import http.client
import random
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "RETRYABLE_STATUSES",
    "DeliveryError",
    "HttpResponse",
    "HttpSender",
    "HttpStatusError",
    "backoff_delay",
    "basic_auth",
    "parse_retry_after",
]

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
BACKOFF_BASE = 0.1  # seconds before the first retry (before jitter)
BACKOFF_CAP = 5.0
GZIP_MIN_SIZE = 512  # smaller bodies are not worth compressing
_BODY_EXCERPT = 300


class DeliveryError(Exception):
    """A batch could not be delivered within its time budget."""


class _NoTimeLeft(TimeoutError):
    """The budget ran out before an attempt could start (after a retry's wait)."""


class HttpStatusError(DeliveryError):
    """The destination answered with a status that is not a success."""

    def __init__(self, url: str, status: int, body: bytes, attempts: int) -> None:
        self.status = status
        self.body = body
        text = body[:_BODY_EXCERPT].decode("utf-8", "replace").strip()
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"{url} answered HTTP {status}{tries}" + (f": {text}" if text else ""))


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes
    content_type: str
    retry_after: float | None = None


def backoff_delay(attempt: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): exponential, with
    jitter in the upper half, so many processes hit by the same outage do not retry in step."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** (attempt - 1))
    return ceiling * (0.5 + rand() / 2)


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` as seconds from now: delay-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, float(when.timestamp()) - now())


def basic_auth(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


class HttpSender:
    """POSTs bodies to one URL. ``post`` either returns a 2xx response or raises
    :class:`DeliveryError` once the budget is spent or the status is final."""

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
        compress: bool = False,
        verify: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._headers = dict(headers or {})
        self.timeout = timeout
        self.compress = compress
        self._ssl: ssl.SSLContext | None = None
        if self._https:
            self._ssl = ssl.create_default_context()
            if not verify:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        self._sleep = sleep
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        # counters, read by the drivers' stats()
        self.request_count = 0
        self.retry_count = 0
        self.failed_count = 0
        self.last_status = 0

    def post(self, body: bytes, content_type: str) -> HttpResponse:
        headers = {**self._headers, "Content-Type": content_type}
        if self.compress and len(body) >= GZIP_MIN_SIZE:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        deadline = time.monotonic() + self.timeout
        attempt = 0
        failure: DeliveryError | None = None
        with self._lock:
            while True:
                attempt += 1
                retry_after: float | None = None
                try:
                    response = self._attempt(body, headers, deadline)
                except _NoTimeLeft as exc:
                    # A retry's wait ended past the budget: the error worth reporting is
                    # the one that made us retry, not the budget.
                    self.failed_count += 1
                    raise failure if failure is not None else DeliveryError(f"{self.url}: {exc}") from None
                except (OSError, http.client.HTTPException) as exc:
                    self._drop_connection()
                    failure = DeliveryError(f"{self.url}: {type(exc).__name__}: {exc}")
                else:
                    self.last_status = response.status
                    if 200 <= response.status < 300:
                        return response
                    failure = HttpStatusError(self.url, response.status, response.body, attempt)
                    if response.status not in RETRYABLE_STATUSES:
                        self.failed_count += 1
                        raise failure
                    retry_after = response.retry_after
                delay = retry_after if retry_after is not None else backoff_delay(attempt)
                if time.monotonic() + delay >= deadline:
                    self.failed_count += 1
                    raise failure
                self.retry_count += 1
                self._sleep(delay)

    def _attempt(self, body: bytes, headers: dict[str, str], deadline: float) -> HttpResponse:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _NoTimeLeft(f"no time left within the {self.timeout:g}s budget")
        conn = self._conn
        if conn is None:
            conn = self._connect(remaining)
        elif conn.sock is not None:
            conn.sock.settimeout(remaining)
        self.request_count += 1
        conn.request("POST", self._path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.will_close:
            self._drop_connection()
        return HttpResponse(
            response.status,
            data,
            response.getheader("Content-Type", "") or "",
            parse_retry_after(response.getheader("Retry-After")),
        )

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=self._ssl
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        self._conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def close(self) -> None:
        with self._lock:
            self._drop_connection()

    def stats(self) -> dict[str, int]:
        return {
            "request_count": self.request_count,
            "retry_count": self.retry_count,
            "failed_request_count": self.failed_count,
            "last_http_status": self.last_status,
        }
