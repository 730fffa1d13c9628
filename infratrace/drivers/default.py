"""``driver = "default"``: the console. Spans with status ``error`` go to stderr, all
others to stdout (SPEC §6), as format lines or, with ``json = true``, JSON lines."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from .._config import ConnectionConfig
from .._fields import ResourceView
from .._span import STATUS_ERROR, Span
from ._lines import LineEncoder

__all__ = ["ConsoleDriver"]


class ConsoleDriver:
    def __init__(self, config: ConnectionConfig) -> None:
        config.setting_reader().reject_unknown()
        self._encode = LineEncoder(config)

    def write(self, spans: Sequence[Span], resource: ResourceView) -> None:
        out = bytearray()
        err = bytearray()
        encode = self._encode
        for span in spans:
            target = err if span.status == STATUS_ERROR else out
            target += encode(span, resource)
            target += b"\n"
        if out:
            _emit(sys.stdout, out)
        if err:
            _emit(sys.stderr, err)

    def close(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass


def _emit(stream: TextIO, data: bytearray) -> None:
    # Looked up at write time, so redirected/captured streams are honoured.
    stream.write(data.decode("utf-8", "replace"))
    stream.flush()
