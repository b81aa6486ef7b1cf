"""SandboxConfig: seed defaults, defaults < environment < arguments, validation by field."""

from __future__ import annotations

import pytest

from sandboxkit import SandboxConfig
from sandboxkit.config import DEFAULT_IMAGE
from sandboxkit.errors import ConfigError
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
        ({"command_timeout": -5.0}, "command_timeout", "300"),
        ({"ttl_seconds_after_finished": -1}, "ttl_seconds_after_finished", "300"),
        ({"active_deadline_seconds": 0}, "active_deadline_seconds", "14400"),
        ({"termination_grace_period_seconds": -2}, "termination_grace_period_seconds", "300"),
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
