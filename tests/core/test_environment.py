"""The environment variables a deployment sets instead of editing TOML (OTEL_* and
INFRATRACE_*), and their precedence over the TOML file."""

from __future__ import annotations

import subprocess
import sys

import pytest

import infratrace
from infratrace import ConfigError, baggage, load_config

OTEL_AND_OURS = (
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_PROPAGATORS",
    "INFRATRACE_DISABLED",
    "INFRATRACE_SERVICE",
    "INFRATRACE_PROJECT",
    "INFRATRACE_PROFILE",
    "INFRATRACE_ROLE",
    "INFRATRACE_NODE",
    "INFRATRACE_SAMPLE_RATE",
    "INFRATRACE_SAMPLE_PARENT",
    "INFRATRACE_PROPAGATORS",
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for name in OTEL_AND_OURS:
        monkeypatch.delenv(name, raising=False)


def test_otel_service_name_and_resource_attributes_fill_what_toml_leaves_unset(monkeypatch):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,team=a%2Cb,service.name=from-attrs")
    resource = load_config({}).resource
    assert resource["service.name"] == "from-attrs"
    assert resource["deployment.environment"] == "prod"
    assert resource["team"] == "a,b"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    assert load_config({}).resource["service.name"] == "from-env"
    toml = load_config({"infratrace": {"service": "from-toml", "attributes": {"team": "toml-team"}}}).resource
    assert toml["service.name"] == "from-toml"
    assert toml["team"] == "toml-team"  # [infratrace.attributes] wins over OTEL_RESOURCE_ATTRIBUTES
    assert toml["deployment.environment"] == "prod"


def test_infratrace_variables_override_the_toml_file(monkeypatch):
    toml = {"infratrace": {"service": "svc", "project": "p", "profile": "dev", "node": "n"}, "trace": {"sample": 0.3}}
    monkeypatch.setenv("INFRATRACE_SERVICE", "deployed")
    monkeypatch.setenv("INFRATRACE_PROFILE", "prod")
    monkeypatch.setenv("INFRATRACE_NODE", "host-7")
    monkeypatch.setenv("INFRATRACE_ROLE", "worker")
    monkeypatch.setenv("INFRATRACE_SAMPLE_RATE", "0.05")
    monkeypatch.setenv("INFRATRACE_SAMPLE_PARENT", "ignore")
    config = load_config(toml)
    assert config.resource["service.name"] == "deployed"
    assert config.resource["profile"] == "prod"
    assert config.resource["node"] == "host-7"
    assert config.resource["role"] == "worker"
    assert config.resource["project"] == "p"
    sample = config.connections[0].sample
    assert (sample.rate, sample.parent) == (0.05, "ignore")


@pytest.mark.parametrize(
    ("sampler", "arg", "rate", "parent", "error"),
    [
        ("always_on", None, 1.0, "ignore", True),
        ("always_off", None, 0.0, "ignore", False),
        ("traceidratio", "0.25", 0.25, "ignore", True),
        ("parentbased_always_on", None, 1.0, "honor", True),
        ("parentbased_always_off", None, 0.0, "honor", False),
        ("parentbased_traceidratio", "0.1", 0.1, "honor", True),
        ("ParentBased_TraceIdRatio", None, 1.0, "honor", True),
    ],
)
def test_otel_traces_sampler_maps_onto_a_connection_without_sample(monkeypatch, sampler, arg, rate, parent, error):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
    if arg is not None:
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    config = load_config({"trace": {"a": {"driver": "default"}, "b": {"driver": "default", "sample": 0.5}}})
    a, b = config.connections
    assert (a.sample.rate, a.sample.parent, a.sample.error) == (rate, parent, error)
    assert (b.sample.rate, b.sample.parent) == (0.5, "honor")  # the TOML's own [sample] wins


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("OTEL_SDK_DISABLED", "maybe", "expected true or false"),
        ("INFRATRACE_DISABLED", "2", "expected true or false"),
        ("OTEL_TRACES_SAMPLER", "jaeger_remote", "expected one of always_on"),
        ("OTEL_PROPAGATORS", "tracecontext,b3", '"tracecontext" and "baggage"'),
        ("INFRATRACE_SAMPLE_RATE", "1.5", "between 0 and 1"),
        ("INFRATRACE_SAMPLE_RATE", "nan", "between 0 and 1"),
        ("INFRATRACE_SAMPLE_PARENT", "always", '"honor" or "ignore"'),
        ("OTEL_RESOURCE_ATTRIBUTES", "a=1,oops", "key=value pairs"),
    ],
)
def test_a_bad_variable_is_an_error_naming_it(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    if name == "OTEL_TRACES_SAMPLER":
        pass
    with pytest.raises(ConfigError) as info:
        load_config({})
    text = str(info.value)
    assert text.startswith(f"environment: {name} = ")
    assert message in text


def test_sampler_arg_out_of_range(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "-1")
    with pytest.raises(ConfigError, match="OTEL_TRACES_SAMPLER_ARG"):
        load_config({})


def test_propagators_choose_what_inject_and_extract_handle(monkeypatch):
    incoming = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01", "baggage": "a=1"}
    monkeypatch.setenv("OTEL_PROPAGATORS", "baggage")
    infratrace.configure({"trace": {"driver": "discard"}})
    assert infratrace.extract(incoming) is None
    assert infratrace.extract_baggage(incoming) == {"a": "1"}
    with baggage.scope({"b": "2"}), infratrace.begin("x"):
        assert infratrace.inject({}) == {"baggage": "b=2"}
    monkeypatch.setenv("OTEL_PROPAGATORS", "tracecontext")
    infratrace.configure({"trace": {"driver": "discard"}})
    assert infratrace.extract(incoming) is not None
    assert infratrace.extract_baggage(incoming) == {}
    with baggage.scope({"b": "2"}), infratrace.begin("x"):
        assert set(infratrace.inject({})) == {"traceparent"}
    monkeypatch.setenv("OTEL_PROPAGATORS", "none")
    infratrace.configure({"trace": {"driver": "discard"}})
    with baggage.scope({"b": "2"}), infratrace.begin("x"):
        assert infratrace.inject({}) == {}
    from infratrace.instrumentation import remote_parent

    assert remote_parent(incoming["traceparent"]) is None


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    environ = {k: v for k, v in os.environ.items() if k not in OTEL_AND_OURS and k != "INFRATRACE_CONFIG"}
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=60, check=False)


def test_sdk_disabled_records_nothing_opens_nothing_and_starts_no_trace_downstream(tmp_path):
    output = tmp_path / "logs" / "spans.jsonl"
    code = f"""
import threading, infratrace
infratrace.configure('[trace]\\ndriver = "file"\\njson = true\\n[trace.setting]\\noutput = "{output}"\\n')
with infratrace.begin("http:GET /") as root:
    with infratrace.begin("service:x") as child:
        headers = infratrace.inject({{}})
    print(type(root).__name__, type(child).__name__, headers["traceparent"][-2:], root.trace_id == child.trace_id)
remote = infratrace.extract({{"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}})
with infratrace.begin("http:GET /in", parent=remote) as span:
    print(span.trace_id, infratrace.inject({{}})["traceparent"][-2:])
infratrace.trace("event:x")
infratrace.force_flush(5)
print(infratrace.stats()["ended_count"], threading.active_count())
"""
    for variable in ("OTEL_SDK_DISABLED", "INFRATRACE_DISABLED"):
        result = _run(code, **{variable: "true"})
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == "NonRecordingSpan NonRecordingSpan 00 True"
        assert lines[1] == "a" * 32 + " 01"  # a caller's trace passes through untouched
        assert lines[2] == "0 1"  # nothing ended, no pipeline thread
        assert not output.parent.exists()  # no folder, no file


def test_disabled_before_any_configuration_too():
    result = _run(
        "import infratrace\nwith infratrace.begin('a') as a: pass\nprint(type(a).__name__, infratrace.stats()['ended_count'])",
        OTEL_SDK_DISABLED="TRUE",
    )
    assert result.stdout.split() == ["NonRecordingSpan", "0"], result.stderr


def test_a_local_infratrace_toml_is_found_and_a_process_without_configuration_says_so(tmp_path):
    import os

    code = "import infratrace\nwith infratrace.begin('x'): pass\nwith infratrace.begin('y'): pass\ninfratrace.force_flush(5)\nprint(infratrace.get_hook().config.source)"
    environ = {k: v for k, v in os.environ.items() if k not in OTEL_AND_OURS and k != "INFRATRACE_CONFIG"}
    bare = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=60)
    assert bare.stdout.splitlines()[-1] == "<defaults>"
    warning = "infratrace: no configuration found ($INFRATRACE_CONFIG is unset and there is no ./infratrace.toml); spans go to the console only"
    assert bare.stderr.splitlines() == [warning]  # once, not per span
    (tmp_path / "infratrace.toml").write_text(
        f'[trace]\ndriver = "file"\njson = true\n[trace.setting]\noutput = "{tmp_path}/t.jsonl"\n'
    )
    found = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=60)
    assert found.stderr == ""
    assert found.stdout.splitlines()[-1] == str((tmp_path / "infratrace.toml").resolve())
    assert len((tmp_path / "t.jsonl").read_text().splitlines()) == 2
