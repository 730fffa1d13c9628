"""``driver = "default"``: the console. Spans with status ``error`` go to stderr, all
others to stdout, as format lines or, with ``json = true``, JSON lines."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from .._config import ConnectionConfig
from .._settings import NoSettings, settings_for
from .._spandata import SpanData
from ._lines import LineEncoder

__all__ = ["ConsoleDriver"]


class ConsoleDriver:
    settings_schema = NoSettings

    def __init__(self, config: ConnectionConfig) -> None:
        settings_for(config, NoSettings)  # any key is an error, also in a config not made by load_config()
        self._encode = LineEncoder(config)

    def write(self, spans: Sequence[SpanData]) -> None:
        failed = [s for s in spans if s.status == "error"]
        if failed:
            _emit(sys.stderr, self._encode, failed)
            spans = [s for s in spans if s.status != "error"]
        if spans:
            _emit(sys.stdout, self._encode, spans)

    def close(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass


def _emit(stream: TextIO, encoder: LineEncoder, spans: Sequence[SpanData]) -> None:
    # `stream` is looked up at write time, so redirected/captured streams are honoured.
    for data, _ in encoder.chunks(spans):
        stream.write(data.decode("utf-8", "replace"))
    stream.flush()
