"""``driver = "discard"``: accepts every span and writes nothing.

For measuring the pipeline alone, and for switching a connection off without
deleting its configuration."""

from __future__ import annotations

from collections.abc import Sequence

from .._config import ConnectionConfig
from .._settings import NoSettings, settings_for
from .._spandata import SpanData


class DiscardDriver:
    settings_schema = NoSettings

    def __init__(self, config: ConnectionConfig) -> None:
        settings_for(config, NoSettings)  # any key is an error, also in a config not made by load_config()

    def write(self, spans: Sequence[SpanData]) -> None:
        pass

    def close(self) -> None:
        pass
