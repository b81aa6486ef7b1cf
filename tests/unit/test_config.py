"""SandboxConfig: seed defaults, defaults < environment < arguments, validation by field.

Every field is checked for type and range: a wrong value of any type is a ConfigError naming
the field and what it accepts, raised before any API call (the properties at the end try
values of every type in every field, with every HTTP request refused).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from property_support import ANY_TEXT, ANY_VALUE, FAST

from sandboxkit import SandboxConfig, create_sandbox
from sandboxkit.config import DEFAULT_IMAGE, MAX_OUTPUT_LIMIT, MAX_SECONDS
from sandboxkit.errors import ConfigError
from sandboxkit.manifests import job_manifest
from sandboxkit.models import Resources


def test_defaults_are_the_seed_design() -> None:
    config = SandboxConfig.resolve(environ={})
    assert config.execution_backend == "kubernetes"
    assert config.image == DEFAULT_IMAGE == "nikolaik/python-nodejs:python3.11-nodejs20-bullseye"
    assert config.namespace is None  # resolved from the kubeconfig context at connect time
    assert config.service_account == "ci-fixer-sandbox"
    assert config.automount_service_account_token is False
    assert config.resources == Resources("250m", "512Mi", "1", "2Gi")
    assert config.ttl_seconds_after_finished == 300
    assert config.active_deadline_seconds > 0
    assert 0 < config.termination_grace_period_seconds < 30
    assert config.startup_timeout > 0 and config.output_limit > 0


def test_environment_overrides_defaults() -> None:
    environ = {
        "EXECUTION_BACKEND": "kubernetes",
        "SANDBOXKIT_IMAGE": "busybox",
        "SANDBOXKIT_NAMESPACE": "ci",
        "SANDBOXKIT_CPU_LIMIT": "2",
        "SANDBOXKIT_MEMORY_REQUEST": "1Gi",
        "SANDBOXKIT_STARTUP_TIMEOUT": "30",
        "SANDBOXKIT_COMMAND_TIMEOUT": "12.5",
        "SANDBOXKIT_TTL_SECONDS_AFTER_FINISHED": "60",
        "SANDBOXKIT_KEEP_ON_FAILURE": "true",
        "SANDBOXKIT_LABELS": "team=ci,tier=test",
        "SANDBOXKIT_ENV": '{"CI": "1"}',
        "UNRELATED": "x",
    }
    config = SandboxConfig.resolve(environ=environ)
    assert config.image == "busybox"
    assert config.namespace == "ci"
    assert config.resources == Resources("250m", "1Gi", "2", "2Gi")
    assert config.startup_timeout == 30.0
    assert config.command_timeout == 12.5
    assert config.ttl_seconds_after_finished == 60
    assert config.keep_on_failure is True
    assert dict(config.labels) == {"team": "ci", "tier": "test"}
    assert dict(config.env) == {"CI": "1"}


def test_exec_session_is_on_by_default_and_off_from_the_environment() -> None:
    assert SandboxConfig().exec_session is True
    assert SandboxConfig.resolve(environ={}).exec_session is True
    for text, expected in (("0", False), ("no", False), ("False", False), ("1", True)):
        config = SandboxConfig.resolve(environ={"SANDBOXKIT_EXEC_SESSION": text})
        assert config.exec_session is expected
    with pytest.raises(ConfigError, match="SANDBOXKIT_EXEC_SESSION"):
        SandboxConfig.resolve(environ={"SANDBOXKIT_EXEC_SESSION": "off"})
    with pytest.raises(ConfigError, match="exec_session"):
        SandboxConfig(exec_session="no")  # type: ignore[arg-type]


def test_arguments_override_environment() -> None:
    environ = {"SANDBOXKIT_IMAGE": "busybox", "SANDBOXKIT_CPU_LIMIT": "2"}
    config = SandboxConfig.resolve(environ=environ, image="python:3.11", cpu_limit="3")
    assert config.image == "python:3.11"
    assert config.resources.cpu_limit == "3"
    # A base config is taken as is: the environment does not leak into it again.
    again = SandboxConfig.resolve(config, environ={"SANDBOXKIT_IMAGE": "alpine"}, name="x1")
    assert again.image == "python:3.11" and again.name == "x1"


def test_execution_backend_comes_from_the_seed_variable() -> None:
    assert SandboxConfig.resolve(environ={"EXECUTION_BACKEND": "docker"}).execution_backend == (
        "docker")
    with pytest.raises(ConfigError) as caught:
        SandboxConfig.resolve(environ={"EXECUTION_BACKEND": "podman"})
    assert caught.value.field == "execution_backend"
    assert "kubernetes, docker, local" in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "field", "example"),
    [
        ({"memory_limit": "2Gb"}, "resources.memory_limit", "2Gi"),
        ({"memory_request": "lots"}, "resources.memory_request", "512Mi"),
        ({"cpu_request": "1.5 cores"}, "resources.cpu_request", "250m"),
        ({"name": "My_Sandbox"}, "name", "my-sandbox"),
        ({"name": "-leading-dash"}, "name", "my-sandbox"),
        ({"name": "x" * 64}, "name", "my-sandbox"),
        ({"namespace": "Team.A"}, "namespace", "default"),
        ({"service_account": "Bad SA"}, "service_account", "ci-fixer-sandbox"),
        ({"startup_timeout": -1}, "startup_timeout", "300"),
        ({"startup_timeout": 0}, "startup_timeout", "300"),
        ({"command_timeout": -5.0}, "command_timeout", "600"),
        ({"ttl_seconds_after_finished": -1}, "ttl_seconds_after_finished", "300"),
        ({"active_deadline_seconds": 0}, "active_deadline_seconds", "14400"),
        ({"termination_grace_period_seconds": -2}, "termination_grace_period_seconds", "2"),
        ({"output_limit": -1}, "output_limit", str(16 * 1024 * 1024)),
        ({"workdir": "relative/dir"}, "workdir", "/workspace"),
        ({"image": "has space"}, "image", "python:3.11-slim"),
        ({"labels": {"bad key!": "x"}}, "labels", "team=ci"),
        ({"env": {"1BAD": "x"}}, "env", "CI=1"),
    ],
)
def test_invalid_values_name_the_field_and_an_example(
    overrides: dict[str, object], field: str, example: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        SandboxConfig.resolve(environ={}, **overrides)
    assert caught.value.field == field
    assert field in str(caught.value) and example in str(caught.value)
    assert isinstance(caught.value, ValueError)  # usable where a ValueError is expected


def test_invalid_environment_values_name_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        SandboxConfig.resolve(environ={"SANDBOXKIT_STARTUP_TIMEOUT": "soon"})
    assert caught.value.field == "SANDBOXKIT_STARTUP_TIMEOUT"
    with pytest.raises(ConfigError) as caught:
        SandboxConfig.resolve(environ={"SANDBOXKIT_MEMORY_LIMIT": "2Gb"})
    assert caught.value.field == "resources.memory_limit"


def test_unknown_setting_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        SandboxConfig.resolve(environ={}, imgae="busybox")
    assert caught.value.field == "imgae"
    assert "image" in str(caught.value)


@pytest.mark.parametrize("quantity", ["1", "250m", "0.5", "2Gi", "512Mi", "1e3", "100M", "1k"])
def test_valid_quantities_pass(quantity: str) -> None:
    SandboxConfig(resources=Resources(quantity, quantity, quantity, quantity))


def test_command_timeout_can_be_disabled() -> None:
    assert SandboxConfig(command_timeout=None).command_timeout is None


_RESOURCE_FIELDS = [f.name for f in dataclasses.fields(Resources)]
_FIELDS = [f.name for f in dataclasses.fields(SandboxConfig)] + _RESOURCE_FIELDS
_SETTINGS = [*_FIELDS, "config"]  # what create_sandbox takes
_PLAUSIBLE = st.sampled_from([
    "kubernetes", "local", "docker", "busybox:1.36", "ci", "/workspace", "250m", "2Gi", "2",
    "restricted", True, False, 0, 1, 300, 2.5, {"team": "ci"}, {"CI": "1"},
    Path("/tmp/kubeconfig"), Resources(), SandboxConfig(image="busybox"),
])


@pytest.mark.parametrize(
    ("overrides", "field", "accepts"),
    [
        # the wrong type altogether
        ({"labels": "-x-"}, "labels", "mapping of label keys to label values"),
        ({"env": True}, "env", "mapping of variable names to string values"),
        ({"image": object()}, "image", "image reference"),
        ({"resources": b".."}, "resources", "Resources"),
        ({"workspace_path": 3}, "workspace_path", "absolute path"),
        ({"config": {"k": 1}}, "config", "SandboxConfig"),
        ({"kubeconfig": 1}, "kubeconfig", "path to a kubeconfig file"),
        ({"cpu_limit": 2}, "resources.cpu_limit", "Kubernetes quantity"),
        ({"startup_timeout": "30"}, "startup_timeout", "number of seconds"),
        # bool where a number is meant (True is an int to Python), a truthy value as a flag
        ({"ttl_seconds_after_finished": True}, "ttl_seconds_after_finished", "whole number"),
        ({"command_timeout": False}, "command_timeout", "number of seconds"),
        ({"keep_on_failure": "no"}, "keep_on_failure", "True or False"),
        ({"allow_egress": 1}, "allow_egress", "True or False"),
        # numbers out of range: NaN, infinity, a float for an int, beyond what fits
        ({"startup_timeout": math.nan}, "startup_timeout", f"at most {MAX_SECONDS}"),
        ({"command_timeout": math.inf}, "command_timeout", f"at most {MAX_SECONDS}"),
        ({"command_timeout": 10**400}, "command_timeout", "positive number of seconds"),
        ({"output_limit": 10**30}, "output_limit", f"from 0 to {MAX_OUTPUT_LIMIT}"),
        ({"output_limit": 1.5}, "output_limit", "whole number of bytes"),
        ({"active_deadline_seconds": 2**31}, "active_deadline_seconds", str(MAX_SECONDS)),
        ({"memory_limit": "9Ei"}, "resources.memory_limit", "from 0 to 8Ei"),
        ({"cpu_request": "-1"}, "resources.cpu_request", "from 0 to 8Ei"),
        ({"cpu_limit": "1e99999999999999999999"}, "resources.cpu_limit", "out of range"),
        ({"cpu_limit": "."}, "resources.cpu_limit", "Kubernetes quantity"),
        # characters no API field can hold, or not in this field's grammar
        ({"image": "\x00"}, "image", "image reference"),
        ({"image": "busybox\udcff"}, "image", "image reference"),
        ({"image": "busybox:1\t"}, "image", "image reference"),
        ({"env": {"A": "\x00"}}, "env[A]", "without NUL characters or lone surrogates"),
        ({"workdir": "/tmp/\ud800"}, "workdir", "without NUL characters"),
        ({"context": "a\x00b"}, "context", "without NUL characters"),
        ({"docker_network": "my net"}, "docker_network", "Docker network"),
        ({"name": "abc\n"}, "name", "DNS-1123 label"),  # `$` would have let it through
        # keys and values of mappings
        ({"labels": {1: "x"}}, "labels", "label key"),
        ({"labels": {"/x": "y"}}, "labels", "label key"),
        ({"labels": {"team": 1}}, "labels[team]", "label value"),
        ({"env": {b"A": "1"}}, "env", "environment variable name"),
        ({"env": {"A": 1}}, "env[A]", "a string"),
    ],
    ids=lambda item: item if isinstance(item, str) else None,
)
def test_each_kind_of_mistake_names_the_field_and_what_it_accepts(
        offline: Path, overrides: dict[str, object], field: str, accepts: str) -> None:
    with pytest.raises(ConfigError) as caught:
        create_sandbox(**overrides)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}=") and accepts in str(caught.value)


@pytest.mark.parametrize("overrides", [
    {"kubeconfig": Path("/etc/kube/config")},          # connect() takes a Path as well
    {"image": "UPPER/Case:Image"},                     # the runtime's InvalidImageName to give
    {"image": "[::1]:5000/team/app@sha256:" + "a" * 64},
    {"cpu_limit": "1Ei", "memory_limit": "0"},
    {"output_limit": 0, "command_timeout": None, "startup_timeout": 1},
    {"labels": {"sandboxkit.io/team": "ci", "empty": ""}, "env": {"A": "line\nbreak"}},
], ids=str)
def test_valid_values_of_every_kind_stay_valid(offline: Path, overrides: dict[str, Any]) -> None:
    config = create_sandbox(**overrides).config
    for name, value in overrides.items():
        holder = config.resources if name in _RESOURCE_FIELDS else config
        assert getattr(holder, name) == value


def test_mappings_are_copied_so_later_changes_do_not_leak_in() -> None:
    labels = {"team": "ci"}
    config = SandboxConfig(labels=types.MappingProxyType(labels), env=labels)
    labels["team"] = "changed"
    assert config.labels == config.env == {"team": "ci"}
    assert SandboxConfig.resolve(config).labels == {"team": "ci"}  # asdict() copes with it


def test_an_explicit_resources_value_is_validated_not_replaced() -> None:
    with pytest.raises(ConfigError) as caught:
        SandboxConfig.resolve(environ={}, resources={})
    assert caught.value.field == "resources"


def test_a_value_too_large_to_show_still_names_the_field() -> None:
    with pytest.raises(ConfigError, match="output_limit=<int too long to show>") as caught:
        SandboxConfig(output_limit=10**5000)
    assert caught.value.value == 10**5000


def _names(error_field: str, setting: str) -> bool:
    """Whether the ConfigError's field is ``setting`` itself, one of its keys, or (for a
    resource override such as ``cpu_limit``) its place under ``resources``."""
    return error_field in (setting, f"resources.{setting}") or error_field.startswith(
        (f"{setting}[", f"{setting}."))


def _sendable(config: SandboxConfig) -> None:
    """The config, and the Job manifest made from it, are strict JSON (no NaN or infinity),
    UTF-8 encodable (no lone surrogate) and free of NUL: what a config that validated
    promises the API requests, waits and timeouts made from it."""
    for data in (dataclasses.asdict(config), job_manifest(config, "sandbox-0", "unit test")):
        body = json.dumps(data, allow_nan=False, ensure_ascii=False, default=str)
        assert "\0" not in body and body.encode("utf-8")


@FAST
@given(setting=st.sampled_from(_SETTINGS), value=st.one_of(ANY_VALUE, _PLAUSIBLE))
def test_any_value_in_any_setting_is_a_valid_config_or_a_config_error(
        offline: Path, setting: str, value: object) -> None:
    try:
        sandbox = create_sandbox(**{setting: value})
    except ConfigError as exc:
        assert _names(exc.field, setting), (exc.field, setting)
        assert "(for example " in str(exc)
        return
    _sendable(sandbox.config)


@FAST
@given(setting=st.sampled_from(_FIELDS), text=st.one_of(ANY_TEXT, st.sampled_from(
    ["1", "0", "-1", "nan", "inf", "1e400", "true", "a=1,b=2", '{"a": 1}', "[1]", "2Gi"])))
def test_any_environment_text_is_a_valid_config_or_a_config_error(
        setting: str, text: str) -> None:
    variable = f"SANDBOXKIT_{setting.upper()}"
    try:
        config = SandboxConfig.resolve(environ={variable: text})
    except ConfigError as exc:
        assert exc.field == variable or _names(exc.field, setting), (exc.field, setting)
        return
    _sendable(config)
