"""Drivers by name and entry point; the replaceable tracer hook."""

from __future__ import annotations

import sys
import textwrap

import pytest

import infratrace
from infratrace import ConfigError, TraceHook, register_driver
from infratrace._registry import available_drivers


def test_builtin_drivers_are_listed():
    assert {"default", "file", "discard", "otlp", "greptime"} <= set(available_drivers())


def test_register_driver_validates_its_arguments():
    with pytest.raises(ValueError):
        register_driver("", lambda c: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError):
        register_driver("x", "not callable")  # type: ignore[arg-type]


def test_third_party_driver_found_through_entry_points(tmp_path, monkeypatch):
    package = tmp_path / "acme_trace"
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            SEEN = []
            class AcmeDriver:
                def __init__(self, config):
                    self.prefix = config.setting.get("prefix", "")
                def write(self, spans):
                    SEEN.extend(self.prefix + s.name for s in spans)
                def close(self):
                    pass
            """
        )
    )
    dist = tmp_path / "acme_trace-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-trace\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[infratrace.drivers]\nacme = acme_trace:AcmeDriver\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "acme" in available_drivers()
    infratrace.configure('[trace]\ndriver = "acme"\n[trace.setting]\nprefix = "A:"')
    infratrace.trace("x")
    infratrace.force_flush()
    import acme_trace  # type: ignore[import-not-found]

    assert acme_trace.SEEN == ["A:x"]
    infratrace.shutdown()
    sys.modules.pop("acme_trace", None)


def test_broken_entry_point_is_a_config_error(tmp_path, monkeypatch):
    dist = tmp_path / "broken-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[infratrace.drivers]\nbroken = no_such_module:Driver\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as info:
        infratrace.configure('[trace.b]\ndriver = "broken"')
    assert info.value.key == "trace.b.driver" and "entry point failed" in str(info.value)


def test_third_party_driver_settings_are_checked_by_load_config():
    from dataclasses import dataclass

    from infratrace import settings

    @dataclass(frozen=True)
    class PickySettings:
        port: int = settings.whole(80, "the port", minimum=1)

    class Picky:
        settings_schema = PickySettings

        def __init__(self, config):
            self.settings = settings.settings_for(config, PickySettings)

        def write(self, spans):
            pass

        def close(self):
            pass

    register_driver("picky", Picky)  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as info:
        infratrace.load_config('[trace.p]\ndriver = "picky"\n[trace.p.setting]\nport = 0')
    assert info.value.key == "trace.p.setting.port"
    with pytest.raises(ConfigError) as info:
        infratrace.load_config('[trace.p]\ndriver = "picky"\n[trace.p.setting]\nprot = 8')
    assert info.value.key == "trace.p.setting.prot" and "port" in str(info.value)


class ListHook:
    """A whole replacement tracer: records names in a list."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def begin(self, name, attrs=None, *, kind=None, parent=None):
        self.names.append(f"begin:{name}")
        return infratrace.NonRecordingSpan(name, None)

    def start_span(self, name, attrs=None, *, kind=None, parent=None):
        self.names.append(f"start:{name}")
        return infratrace.NonRecordingSpan(name, None, make_current=False)

    def trace(self, name, attrs=None):
        self.names.append(f"trace:{name}")

    def current_span(self):
        return None

    def configure(self, config):
        self.names.append("configure")

    def stats(self):
        return {"hook": True}

    def force_flush(self, timeout=None):
        return True

    def shutdown(self, timeout=None):
        return True


def test_set_hook_replaces_the_whole_tracer():
    hook = ListHook()
    assert isinstance(hook, TraceHook)
    previous = infratrace.set_hook(hook)
    try:
        infratrace.configure({})
        with infratrace.begin("a"):
            pass
        infratrace.trace("b")

        @infratrace.service("c")
        def c() -> None:
            pass

        c()
        assert hook.names == ["configure", "begin:a", "trace:b", "start:service:c"]
        assert infratrace.stats() == {"hook": True}
    finally:
        infratrace.set_hook(previous)


def test_set_hook_rejects_objects_that_are_not_hooks():
    with pytest.raises(TypeError):
        infratrace.set_hook(object())  # type: ignore[arg-type]


class BrokenHook(ListHook):
    def begin(self, name, attrs=None, *, kind=None, parent=None):
        raise RuntimeError("hook bug")

    def trace(self, name, attrs=None):
        raise RuntimeError("hook bug")


def test_a_failing_third_party_hook_never_reaches_the_application():
    previous = infratrace.set_hook(BrokenHook())
    try:
        with infratrace.begin("a") as span:
            assert span.trace_id
        assert not span.is_recording
        infratrace.trace("b")
    finally:
        infratrace.set_hook(previous)
    assert infratrace.get_hook() is previous
    with infratrace.begin("c") as span:
        assert span.is_recording


def test_names_imported_before_set_hook_follow_the_new_hook():
    from infratrace import begin, start_span, trace

    hook = ListHook()
    previous = infratrace.set_hook(hook)
    try:
        with begin("a"):
            pass
        start_span("b").end()
        trace("c")
    finally:
        infratrace.set_hook(previous)
    assert hook.names == ["begin:a", "start:b", "trace:c"]
    assert begin is infratrace.begin  # the module's functions were never rebound


def test_ending_a_span_whose_fields_were_deleted_neither_crashes_nor_raises(span_file, capfd):
    """Deleting a span's attributes used to crash the interpreter in native code."""
    out = span_file()
    from infratrace.instrumentation import finish_http_span

    span = infratrace.begin("x")
    del span.attributes
    finish_http_span(span, 200)
    with infratrace.begin("after"):
        pass
    assert [s["name"] for s in out.spans()] == ["after"]
    stats = infratrace.stats()["connections"]["default"]
    assert stats["dropped_count"] == 1 and stats["written_count"] == 1
    assert "AttributeError" in capfd.readouterr().err
