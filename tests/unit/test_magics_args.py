"""How magic arguments become settings, without a cluster: precedence of defaults, the
environment, ``%config`` traits and flags; the --cpu/--memory rules; line-form splitting;
and that every mistake is a UsageError raised before a sandbox object is even made."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from sandboxkit.config import DEFAULT_IMAGE, SandboxConfig
from sandboxkit.errors import ConfigError
from sandboxkit.magics import SandboxMagics
from sandboxkit.magics.options import (
    parse_env,
    resource_overrides,
    split_line_command,
    unquote,
    variable_name,
)
from sandboxkit.magics.registry import SandboxRegistry, UnknownSandbox


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("SANDBOXKIT_IMAGE", "SANDBOXKIT_CPU_REQUEST", "SANDBOXKIT_CPU_LIMIT",
                 "SANDBOXKIT_MEMORY_REQUEST", "SANDBOXKIT_MEMORY_LIMIT", "SANDBOXKIT_ENV",
                 "EXECUTION_BACKEND", "SANDBOXKIT_EXECUTION_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_unset_traits_leave_the_environment_in_charge(clean_env: pytest.MonkeyPatch) -> None:
    magics = SandboxMagics()
    assert magics.sandbox_config().image == DEFAULT_IMAGE
    clean_env.setenv("SANDBOXKIT_IMAGE", "from-env:1")
    assert magics.sandbox_config().image == "from-env:1"
    magics.image = "from-trait:1"
    assert magics.sandbox_config().image == "from-trait:1"
    assert magics.sandbox_config(image="from-flag:1").image == "from-flag:1"
    assert magics.sandbox_config(image=None).image == "from-trait:1"


def test_cpu_flag_keeps_the_request_the_trait_or_environment_set(
        clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SANDBOXKIT_MEMORY_REQUEST", "100Mi")
    magics = SandboxMagics(cpu="20m:1")
    resources = magics.sandbox_config(cpu="3", memory="1Gi").resources
    assert (resources.cpu_request, resources.cpu_limit) == ("20m", "3")
    assert (resources.memory_request, resources.memory_limit) == ("100Mi", "1Gi")


def test_env_flags_add_to_the_environment_setting(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SANDBOXKIT_ENV", "A=1,B=2")
    config = SandboxMagics().sandbox_config(env={"B": "3", "C": "x=y"})
    assert dict(config.env) == {"A": "1", "B": "3", "C": "x=y"}


@pytest.mark.parametrize(("value", "expected"), [
    ("2", ("250m", "2")),            # the default request stays under a larger limit
    ("100m", ("100m", "100m")),      # ... and is lowered to a smaller one
    ("500m:2", ("500m", "2")),
    ("1.5", ("250m", "1.5")),
])
def test_cpu_request_and_limit(value: str, expected: tuple[str, str]) -> None:
    changes = resource_overrides("cpu", value, SandboxConfig())
    assert (changes["cpu_request"], changes["cpu_limit"]) == expected


@pytest.mark.parametrize(("value", "message"), [
    ("2Gb", "not a Kubernetes quantity"),
    ("1Gi:512Mi", "the request is above the limit"),
    ("x:1Gi", "not a Kubernetes quantity"),
    ("0", "must be positive"),
])
def test_bad_memory_values(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resource_overrides("memory", value, SandboxConfig())


def test_env_pairs() -> None:
    assert parse_env(["A=1", "B=", "C=x=y"]) == {"A": "1", "B": "", "C": "x=y"}
    for bad in ("A", "=1"):
        with pytest.raises(ConfigError, match="expected NAME=VALUE"):
            parse_env([bad])


@pytest.mark.parametrize(("line", "expected"), [
    ("echo hi", ("", "echo hi")),
    ("  ls -la /tmp ", ("", "ls -la /tmp")),
    ("web --check -- make test", ("web --check", "make test")),
    ("-- echo a -- b", ("", "echo a -- b")),
    ("--timeout 5 -- sleep 1", ("--timeout 5", "sleep 1")),
])
def test_line_command_split(line: str, expected: tuple[str, str]) -> None:
    assert split_line_command(line) == expected


def test_line_command_with_options_needs_the_separator() -> None:
    with pytest.raises(ConfigError, match="put -- between the options and the command"):
        split_line_command("--check make test")


def test_names_and_paths() -> None:
    assert variable_name("--out", "result") == "result"
    for bad in ("1x", "class", "a-b"):
        with pytest.raises(ConfigError, match="not a Python variable name"):
            variable_name("--out", bad)
    assert unquote("'/tmp/a b'") == "/tmp/a b"
    assert unquote('"/tmp/x"') == "/tmp/x"
    assert unquote("/tmp/'x'") == "/tmp/'x'"


@pytest.mark.parametrize(("magic", "line", "message"), [
    ("sandbox_up", "--cpu 2Gb", "not a Kubernetes quantity"),
    ("sandbox_up", "--nope", "unrecognized arguments"),
    ("sandbox_up", "UPPER", "DNS-1123"),
    ("sandbox_exec", "true", "no sandbox in this kernel"),
    ("sandbox_down", "gone", "no sandbox named 'gone'"),
    ("sandbox_down", "a --all", "not both"),
    ("sandbox_logs", "--tail x", "invalid int value"),
])
def test_mistakes_raise_usage_errors(magic: str, line: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        getattr(SandboxMagics(), magic)(line)


def test_registry_current_is_the_last_added() -> None:
    registry = SandboxRegistry()
    with pytest.raises(UnknownSandbox, match="%sandbox_up"):
        registry.get()

    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

    first, second = Named("a"), Named("b")
    registry.add(first)  # type: ignore[arg-type]
    registry.add(second, keep=True)  # type: ignore[arg-type]
    assert registry.get() is second and registry.get("a") is first
    assert registry.kept() == [second]
    registry.add(first)  # type: ignore[arg-type]
    assert registry.get() is first
    with pytest.raises(UnknownSandbox, match=r"known: b, a"):
        registry.get("c")
