# mypy: disable-error-code="import-untyped"
"""``INSTALLED_APPS += ["infratrace_django"]``: configure infratrace from the Django
settings at start-up, validate the adapter options, trace signal receivers and
database queries."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.apps import AppConfig
from django.core.signals import setting_changed

import infratrace
from infratrace import ConfigError

from ._db import apply_database_options
from ._options import SETTING, django_options, reset_options
from .middleware import trace_connection_queries
from .signals import install_signal_tracing, uninstall_signal_tracing

__all__ = ["InfratraceDjangoConfig", "configure_from_settings"]

CONFIG_SETTING = "INFRATRACE"
ENV_CONFIG = "INFRATRACE_CONFIG"


class InfratraceDjangoConfig(AppConfig):  # type: ignore[misc]  # Django ships no type hints
    name = "infratrace_django"
    label = "infratrace_django"
    verbose_name = "infratrace"

    def ready(self) -> None:
        configure_from_settings()
        apply_options()
        setting_changed.connect(_on_setting_changed, dispatch_uid="infratrace_django.setting_changed")


def configure_from_settings() -> infratrace.Config | None:
    """``settings.INFRATRACE`` (a TOML file path, a TOML string or a mapping shaped
    like the TOML) or else ``$INFRATRACE_CONFIG``; with neither, tracing configures
    itself with the defaults on the first span (so a configuration made in code before
    Django starts is kept). A bad configuration raises :class:`infratrace.ConfigError`
    naming the key, here at start-up."""
    from django.conf import settings

    source: Any = getattr(settings, CONFIG_SETTING, None)
    if source is None:
        return infratrace.configure(None) if os.environ.get(ENV_CONFIG) else None
    if not isinstance(source, (str, os.PathLike, Mapping)):
        raise ConfigError(CONFIG_SETTING, source, "expected a TOML file path, a TOML string or a dict", "Django settings")
    if isinstance(source, Path):
        source = str(source)
    return infratrace.configure(source)


def apply_options() -> None:
    """Validate ``settings.INFRATRACE_DJANGO`` now (errors at start-up, not at the
    first request) and install signal tracing and database spans accordingly."""
    reset_options()
    options = django_options()
    if options.signals:
        install_signal_tracing(options)
    else:
        uninstall_signal_tracing()
    apply_database_options(options, trace_connection_queries)


def _on_setting_changed(setting: str = "", **kwargs: Any) -> None:
    if setting == SETTING:
        apply_options()
