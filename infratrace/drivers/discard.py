"""``driver = "discard"``: accepts every span and writes nothing.

For measuring the pipeline alone, and for switching a connection off without
deleting its configuration."""

from __future__ import annotations

from collections.abc import Sequence

from .._config import ConnectionConfig
from .._spandata import SpanData


class DiscardDriver:
    def __init__(self, config: ConnectionConfig) -> None:
        config.setting_reader().reject_unknown()

    def write(self, spans: Sequence[SpanData]) -> None:
        pass

    def close(self) -> None:
        pass
