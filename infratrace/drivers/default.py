"""``driver = "default"``: the console. Spans with status ``error`` go to stderr, all
others to stdout, as format lines or, with ``json = true``, JSON lines."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from .._config import ConnectionConfig
from .._fields import line_encoder
from .._settings import NoSettings, settings_for
from .._spandata import SpanData

__all__ = ["ConsoleDriver"]

ConsoleLine = tuple[bool, bytes]  # (goes to stderr, the line)


class ConsoleDriver:
    settings_schema = NoSettings
    overflow = "sync"  # a local destination: a full backlog is written by the thread that fills it

    def __init__(self, config: ConnectionConfig) -> None:
        settings_for(config, NoSettings)  # any key is an error, also in a config not made by load_config()
        self._line = line_encoder(config)

    def encode(self, span: SpanData) -> ConsoleLine:
        return (span.status == "error", self._line(span))

    def write_encoded(self, lines: Sequence[ConsoleLine]) -> None:
        errors = [line for to_stderr, line in lines if to_stderr]
        if errors:
            _emit(sys.stderr, errors)
            _emit(sys.stdout, [line for to_stderr, line in lines if not to_stderr])
        else:
            _emit(sys.stdout, [line for _, line in lines])

    def write(self, spans: Sequence[SpanData]) -> None:
        self.write_encoded([self.encode(s) for s in spans])

    def close(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass


def _emit(stream: TextIO, lines: list[bytes]) -> None:
    # `stream` is looked up at write time, so redirected/captured streams are honoured.
    if lines:
        stream.write(b"".join(lines).decode("utf-8", "replace"))
        stream.flush()
