"""sandboxkit's metrics: a registry of its own, Prometheus names, and the command timing that
every backend inherits from the Sandbox base class."""

from __future__ import annotations

import subprocess
import sys
from typing import Any, Self

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sandboxkit import SandboxConfig, SandboxStatus
from sandboxkit.backends.base import Sandbox
from sandboxkit.errors import (
    CommandTimeout,
    ImagePullError,
    PermissionDenied,
    SandboxGone,
    StartupTimeout,
)
from sandboxkit.metrics import REGISTRY, failure_reason
from sandboxkit.models import CommandResult


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_importing_sandboxkit_leaves_the_default_registry_alone() -> None:
    code = ("import prometheus_client, sandboxkit.metrics, sandboxkit.backends.base;"
            "print(sorted(prometheus_client.REGISTRY._names_to_collectors))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "sandboxkit" not in out
    assert REGISTRY is not prometheus_client.REGISTRY


def test_exposition_names_and_types_follow_prometheus_conventions() -> None:
    families = {f.name: f.type for f in text_string_to_metric_families(
        prometheus_client.generate_latest(REGISTRY).decode())}
    assert families == {
        "sandboxkit_sandboxes_created": "counter",
        "sandboxkit_sandboxes_active": "gauge",
        "sandboxkit_sandboxes_failed": "counter",
        "sandboxkit_startup_seconds": "histogram",
        "sandboxkit_command_duration_seconds": "histogram",
        "sandboxkit_command_errors": "counter",
    }


@pytest.mark.parametrize(("error", "reason"), [
    (ImagePullError("x", image="i", reason="ErrImagePull"), "ErrImagePull"),
    (StartupTimeout("x", reason="Timeout"), "Timeout"),
    (SandboxGone("x", reason="DeadlineExceeded"), "DeadlineExceeded"),
    (PermissionDenied("x", verb="create", resource="jobs.batch"), "Forbidden"),
    (CommandTimeout("sleep 9", 1.0, CommandResult("sleep 9", -1)), "Timeout"),
    (KeyboardInterrupt(), "KeyboardInterrupt"),
])
def test_failures_are_counted_under_the_kubernetes_reason(error: BaseException,
                                                          reason: str) -> None:
    assert failure_reason(error) == reason


class ScriptedSandbox(Sandbox):
    """A backend whose commands return or raise what the test scripts: the base class's
    timing is what is under test, and it must not depend on any real backend."""

    def __init__(self, outcome: CommandResult | BaseException) -> None:
        self.config = SandboxConfig()
        self.outcome = outcome

    @property
    def name(self) -> str:
        return "scripted"

    def init(self) -> Self:
        return self

    def status(self) -> SandboxStatus:
        return SandboxStatus(self.name, "")

    def teardown(self, wait: bool = False) -> None:
        return None

    def _execute(self, cmd: str, **_: Any) -> CommandResult:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    def upload(self, local_path: Any, remote_path: str) -> None:
        raise NotImplementedError

    def download(self, remote_path: str, local_path: Any) -> None:
        raise NotImplementedError


def _counts(backend: str = SandboxConfig().execution_backend) -> tuple[float, float, float]:
    return (sample("sandboxkit_command_duration_seconds_count", backend=backend),
            sample("sandboxkit_command_errors_total", backend=backend, reason="Timeout"),
            sample("sandboxkit_command_errors_total", backend=backend, reason="Evicted"))


def test_run_command_and_stream_are_timed_once_each_and_nonzero_exit_is_no_error() -> None:
    sandbox = ScriptedSandbox(CommandResult("false", exit_code=1))
    before = _counts()
    sandbox.run_command("false")
    sandbox.stream("false", on_stdout=None, on_stderr=None)
    after = _counts()
    assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == (2, 0, 0)


def test_a_timeout_counts_as_an_error_and_as_a_duration() -> None:
    timeout = CommandTimeout("sleep 9", 1.0, CommandResult("sleep 9", -1))
    before = _counts()
    with pytest.raises(CommandTimeout):
        ScriptedSandbox(timeout).run_command("sleep 9")
    after = _counts()
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)


def test_a_sandbox_gone_counts_its_reason_and_no_duration() -> None:
    before = _counts()
    with pytest.raises(SandboxGone):
        ScriptedSandbox(SandboxGone("gone", reason="Evicted")).run_command("true")
    after = _counts()
    assert (after[0] - before[0], after[2] - before[2]) == (0, 1)
