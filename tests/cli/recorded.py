"""Trace files with known content, written by the file driver itself (real rotation,
real gzip, real field renames) from spans whose every time is chosen.

Two processes of a shop, each with its own file:

- ``web.jsonl`` — the web app (``shop-web``, pid 1111), ``maxline = 3`` and
  ``compress = true``: its 8 spans end up in two gzipped rotated parts and the live
  file;
- ``worker.jsonl`` — the Celery worker (``shop-worker``, pid 2222).

Trace CHECKOUT is split across both files (and across the web file's rotation):

    http:POST /checkout/{id}      web     0 → 120 ms   (HTTP 202)
    └─ web:shop.views.checkout    web     2 → 118 ms
       ├─ service:orders.place    web    10 →  40 ms
       │  └─ method:orders.checksum web  12 →  14 ms
       └─ queue:shop.process_order (producer) web 50 → 60 ms
          └─ queue:shop.process_order (consumer) worker 70 → 180 ms
             └─ service:payments.charge worker 80 → 170 ms

Trace FAIL (web, 1 s later) ends in error: ``http:GET /fail`` 0 → 8 ms (HTTP 500) and
``web:shop.views.fail`` 1 → 7 ms with an exception event and its stack trace. Trace
HEALTH (web, 2 s later) is one span, ``http:GET /health``, 0 → 2 ms.

``renamed.jsonl`` holds the web process's spans of CHECKOUT written with
``fields = { trace_id = "tid", span_id = "sid", parent_span_id = "parent", name =
"step", duration_ms = "cost" }`` (``renamed.toml``).
"""

from __future__ import annotations

import calendar
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infratrace._config import load_config
from infratrace._spandata import Event, Resource, SpanData
from infratrace.drivers.file import FileDriver

CHECKOUT = "4bf92f3577b34da6a3ce929d0e0e4736"
FAIL = "0af7651916cd43dd8448eb211c80319c"
HEALTH = "5e1f0c3a2b4d6e8f9a0b1c2d3e4f5a6b"
T0 = calendar.timegm((2027, 1, 15, 8, 0, 0, 0, 0, 0)) * 1_000_000_000  # 2027-01-15T08:00:00Z
MS = 1_000_000

WEB = Resource({"service.name": "shop-web", "project": "shop", "profile": "test", "node": "web-1", "process.pid": 1111})
WORKER = Resource({"service.name": "shop-worker", "project": "shop", "profile": "test", "node": "worker-1", "process.pid": 2222})
STACK = (
    "Traceback (most recent call last):\n"
    '  File "shop/views.py", line 41, in fail\n'
    '    raise RuntimeError("payment backend unreachable")\n'
    "RuntimeError: payment backend unreachable\n"
)
RENAMES = 'fields = { trace_id = "tid", span_id = "sid", parent_span_id = "parent", name = "step", duration_ms = "cost" }'


def _span(
    name: str,
    kind: str,
    trace: str,
    span_id: str,
    parent: str,
    start_ms: float,
    end_ms: float,
    resource: Resource,
    *,
    at: int = T0,
    status: tuple[str, int, str] = ("ok", 0, ""),
    attributes: dict[str, Any] | None = None,
    events: tuple[Event, ...] = (),
) -> SpanData:
    return SpanData(
        name=name,
        kind=kind,
        trace_id=trace,
        span_id=span_id,
        parent_span_id=parent,
        trace_flags=1,
        tracestate="",
        start_time_unix_nano=at + int(start_ms * MS),
        end_time_unix_nano=at + int(end_ms * MS),
        status=status[0],
        status_code=status[1],
        status_message=status[2],
        attributes=attributes or {},
        events=events,
        resource=resource,
    )


FAILURE = ("error", 1, "RuntimeError: payment backend unreachable")

# In the order they end, as the driver writes them.
WEB_SPANS = [
    _span("method:orders.checksum", "internal", CHECKOUT, "a400000000000004", "a300000000000003", 12, 14, WEB),
    _span("service:orders.place", "internal", CHECKOUT, "a300000000000003", "a200000000000002", 10, 40, WEB),
    _span(
        "queue:shop.process_order",
        "producer",
        CHECKOUT,
        "a500000000000005",
        "a200000000000002",
        50,
        60,
        WEB,
        attributes={"messaging.system": "celery", "celery.task_name": "shop.process_order"},
    ),
    _span("web:shop.views.checkout", "internal", CHECKOUT, "a200000000000002", "a100000000000001", 2, 118, WEB),
    _span(
        "http:POST /checkout/{id}",
        "server",
        CHECKOUT,
        "a100000000000001",
        "",
        0,
        120,
        WEB,
        status=("ok", 202, ""),
        attributes={"http.request.method": "POST", "http.route": "/checkout/{id}", "http.response.status_code": 202},
    ),
    _span(
        "web:shop.views.fail",
        "internal",
        FAIL,
        "b200000000000002",
        "b100000000000001",
        1,
        7,
        WEB,
        at=T0 + 1000 * MS,
        status=FAILURE,
        events=(
            Event(
                "exception",
                T0 + 1000 * MS + 6 * MS,
                {
                    "exception.type": "RuntimeError",
                    "exception.message": "payment backend unreachable",
                    "exception.stacktrace": STACK,
                },
            ),
        ),
    ),
    _span(
        "http:GET /fail",
        "server",
        FAIL,
        "b100000000000001",
        "",
        0,
        8,
        WEB,
        at=T0 + 1000 * MS,
        status=("error", 500, "RuntimeError: payment backend unreachable"),
        attributes={"http.request.method": "GET", "http.route": "/fail", "http.response.status_code": 500},
    ),
    _span("http:GET /health", "server", HEALTH, "c100000000000001", "", 0, 2, WEB, at=T0 + 2000 * MS),
]
WORKER_SPANS = [
    _span("service:payments.charge", "internal", CHECKOUT, "a700000000000007", "a600000000000006", 80, 170, WORKER),
    _span(
        "queue:shop.process_order",
        "consumer",
        CHECKOUT,
        "a600000000000006",
        "a500000000000005",
        70,
        180,
        WORKER,
        attributes={"messaging.system": "celery", "celery.task_name": "shop.process_order"},
    ),
]


@dataclass
class Recording:
    directory: Path
    web: Path  # the live file
    web_parts: list[Path]  # its rotated parts, gzipped, oldest first
    worker: Path
    renamed: Path
    renamed_config: Path


def driver(config_toml: str, clock: Any = None) -> FileDriver:
    config = load_config(config_toml)
    (connection,) = config.connections
    return FileDriver(connection, clock=clock) if clock is not None else FileDriver(connection)


def write(target: FileDriver, spans: list[SpanData]) -> None:
    """Each span in its own write, as the pipeline might batch them: the driver
    rotates between any two."""
    for span in spans:
        target.write([span])


def record(directory: Path) -> Recording:
    directory.mkdir(parents=True, exist_ok=True)
    web = directory / "web.jsonl"
    worker = directory / "worker.jsonl"
    ticks = itertools.count(1_800_000_000)  # a clock for the rotated files' names
    web_driver = driver(
        f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{web}"\nmaxline = 3\ncompress = true\n',
        clock=lambda: float(next(ticks)),
    )
    try:
        write(web_driver, WEB_SPANS)
        parts = web_driver.rotated_files()
    finally:
        web_driver.close()
    worker_driver = driver(f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{worker}"\n')
    try:
        write(worker_driver, WORKER_SPANS)
    finally:
        worker_driver.close()
    renamed_dir = directory / "renamed"
    renamed_dir.mkdir()
    renamed = renamed_dir / "renamed.jsonl"
    renamed_config = renamed_dir / "renamed.toml"
    renamed_config.write_text(
        f'[trace.file]\ndriver = "file"\njson = true\n{RENAMES}\n[trace.file.setting]\noutput = "{renamed}"\n'
    )
    renamed_driver = driver(
        f'[trace]\ndriver = "file"\njson = true\n{RENAMES}\n[trace.setting]\noutput = "{renamed}"\n',
    )
    try:
        write(renamed_driver, [s for s in WEB_SPANS if s.trace_id == CHECKOUT])
    finally:
        renamed_driver.close()
    return Recording(directory, web, parts, worker, renamed, renamed_config)
