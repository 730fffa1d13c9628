"""AppConfig: infratrace configured from ``settings.INFRATRACE`` / ``$INFRATRACE_CONFIG``,
adapter options validated with errors naming the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.test import Client, override_settings
from infratrace_django import DjangoOptions
from infratrace_django.apps import configure_from_settings

import infratrace
from infratrace import ConfigError


def file_table(path: Path) -> dict[str, Any]:
    return {"trace": {"driver": "file", "json": True, "setting": {"output": str(path)}}}


def written(path: Path) -> list[dict[str, Any]]:
    assert infratrace.force_flush(10)
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(autouse=True)
def _shutdown() -> Any:
    yield
    infratrace.shutdown(5)


def test_mapping_setting(tmp_path: Path) -> None:
    out = tmp_path / "mapping.jsonl"
    with override_settings(INFRATRACE=file_table(out)):
        config = configure_from_settings()
    assert config is not None and config.connections[0].driver == "file"
    Client().get("/hello/")
    assert [s["name"] for s in written(out) if s["name"].startswith("http:")] == ["http:GET hello/"]


def test_toml_path_and_string(tmp_path: Path) -> None:
    out = tmp_path / "path.jsonl"
    toml = f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{out}"\n'
    config_file = tmp_path / "infratrace.toml"
    config_file.write_text(toml)
    with override_settings(INFRATRACE=config_file):
        assert configure_from_settings() is not None
    Client().get("/hello/")
    assert "http:GET hello/" in {s["name"] for s in written(out)}
    with override_settings(INFRATRACE=toml):
        assert configure_from_settings() is not None


def test_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "env.jsonl"
    config_file = tmp_path / "env.toml"
    config_file.write_text(f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{out}"\n')
    monkeypatch.setenv("INFRATRACE_CONFIG", str(config_file))
    assert configure_from_settings() is not None
    Client().get("/hello/")
    assert "http:GET hello/" in {s["name"] for s in written(out)}


def test_nothing_configured_keeps_the_current_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFRATRACE_CONFIG", raising=False)
    assert configure_from_settings() is None


def test_bad_infratrace_setting_names_the_key() -> None:
    with override_settings(INFRATRACE={"trace": {"driver": "file", "buffer": -1}}):
        with pytest.raises(ConfigError, match=r"trace\.buffer"):
            configure_from_settings()
    with override_settings(INFRATRACE=42):
        with pytest.raises(ConfigError, match="INFRATRACE"):
            configure_from_settings()


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"excluded_path": ["^/x"]}, "INFRATRACE_DJANGO.excluded_path"),
        ({"excluded_paths": ["("]}, r"INFRATRACE_DJANGO.excluded_paths\[0\]"),
        ({"span_budget": -1}, "INFRATRACE_DJANGO.span_budget"),
        ({"signals": "yes"}, "INFRATRACE_DJANGO.signals"),
        ({"signal_deny": [3]}, r"INFRATRACE_DJANGO.signal_deny\[0\]"),
        ({"middleware_timings": 1}, "INFRATRACE_DJANGO.middleware_timings"),
        ({"request_hook": "no.such.module:hook"}, "INFRATRACE_DJANGO.request_hook"),
    ],
)
def test_bad_adapter_options_name_the_key(options: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        DjangoOptions.from_mapping(options)


def test_bad_options_fail_when_settings_change() -> None:
    with pytest.raises(ConfigError, match=r"INFRATRACE_DJANGO\.span_budget"):
        with override_settings(INFRATRACE_DJANGO={"span_budget": "many"}):
            pass  # setting_changed validates on enter


def test_options_defaults() -> None:
    options = DjangoOptions.from_mapping(None)
    assert options.signals and not options.middleware_timings
    assert options.signal_deny == (
        "pre_init", "post_init", "request_started", "request_finished", "setting_changed", "autoreload_started", "file_changed",
    )  # fmt: skip
    assert options.web.span_budget == 1000
