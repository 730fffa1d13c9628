"""Declaring a driver's settings: what a third-party driver uses to have its
``[trace.<conn>.setting]`` table checked by ``load_config()`` like the built-in ones.

    from dataclasses import dataclass
    from infratrace import settings

    @dataclass(frozen=True)
    class AcmeSettings:
        endpoint: str = settings.text("http://127.0.0.1:9000", "where spans go")
        timeout: float = settings.duration("5s", "per request", positive=True)

    class AcmeDriver:
        settings_schema = AcmeSettings

        def __init__(self, config):
            self.settings = settings.settings_for(config, AcmeSettings)
"""

from ._settings import (
    NoSettings,
    Setting,
    choice,
    duration,
    flag,
    masked,
    number,
    parse_settings,
    settings_for,
    size,
    table,
    text,
    whole,
)

__all__ = [
    "NoSettings",
    "Setting",
    "choice",
    "duration",
    "flag",
    "masked",
    "number",
    "parse_settings",
    "settings_for",
    "size",
    "table",
    "text",
    "whole",
]
