"""Worker and beat lifecycle: configure tracing where spans are made (the worker's main
process, each prefork pool process, beat) and flush before a process goes away.

Prefork pool processes leave through ``os._exit()``, which skips ``atexit`` — without
the flush on ``worker_process_shutdown`` their last spans would be lost."""

from __future__ import annotations

import logging
from typing import Any

import infratrace

from ._beat import remember_beat
from ._options import config_source
from ._state import state

__all__ = [
    "on_beat_init",
    "on_worker_init",
    "on_worker_process_init",
    "on_worker_process_shutdown",
    "on_worker_shutdown",
]

logger = logging.getLogger("infratrace_celery")


def configure_from_app(app: Any) -> None:
    options = state.options
    if options is None:
        return
    wanted, source = config_source(options, app)
    if not wanted:
        return
    try:
        infratrace.configure(source)
    except Exception as exc:  # a bad config must not stop the worker; say so loudly
        logger.error("infratrace: tracing configuration failed, spans keep the previous configuration: %s", exc)


def on_worker_init(sender: Any = None, **_: Any) -> None:
    app = getattr(sender, "app", None)
    if app is not None and state.app is None:
        state.app = app
    configure_from_app(app if app is not None else state.app)


def on_worker_process_init(**_: Any) -> None:
    configure_from_app(state.app)


def on_beat_init(sender: Any = None, **_: Any) -> None:
    remember_beat(sender)
    app = getattr(sender, "app", None)
    configure_from_app(app if app is not None else state.app)


def _flush_timeout() -> float:
    options = state.options
    return options.flush_timeout if options is not None else 10.0


def on_worker_process_shutdown(**_: Any) -> None:
    try:
        if not infratrace.shutdown(_flush_timeout()):
            logger.warning("infratrace: pool process exits before all its spans were written")
    except Exception:
        pass


def on_worker_shutdown(**_: Any) -> None:
    try:
        if not infratrace.force_flush(_flush_timeout()):
            logger.warning("infratrace: worker stops before all its spans were written")
    except Exception:
        pass
