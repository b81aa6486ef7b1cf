"""sandboxkit's metrics: a registry of its own, Prometheus names, and the command timing that
every backend inherits from the Sandbox base class."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Iterator

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sandboxkit import create_sandbox
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
            "print(prometheus_client.generate_latest().decode())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "sandboxkit" not in out
    assert REGISTRY is not prometheus_client.REGISTRY


def test_exposition_names_and_types_follow_prometheus_conventions() -> None:
    families = {f.name: f.type for f in text_string_to_metric_families(
        prometheus_client.generate_latest(REGISTRY).decode())}
    # Once a labelled series exists, prometheus_client adds its creation time as a
    # ``<name>_created`` sample, which the text format parses as a gauge family of its own.
    families = {name: kind for name, kind in families.items()
                if not (name.endswith("_created") and name.removesuffix("_created") in families)}
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


@pytest.fixture
def local() -> Iterator[Sandbox]:
    """A LocalSandbox: real commands, no cluster; the base class's timing is under test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LocalSandboxWarning: no isolation, known here
        sandbox = create_sandbox(execution_backend="local").init()
    yield sandbox
    sandbox.teardown()


def _counts(backend: str = "local") -> tuple[float, float, float]:
    return (sample("sandboxkit_command_duration_seconds_count", backend=backend),
            sample("sandboxkit_command_errors_total", backend=backend, reason="Timeout"),
            sample("sandboxkit_command_errors_total", backend=backend, reason="TornDown"))


def test_run_command_and_stream_are_timed_once_each_and_nonzero_exit_is_no_error(
        local: Sandbox) -> None:
    before = _counts()
    assert local.run_command("exit 1").exit_code == 1
    local.stream("echo hi; exit 2", on_stdout=None, on_stderr=None)
    after = _counts()
    assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == (2, 0, 0)


def test_a_timeout_counts_as_an_error_and_as_a_duration(local: Sandbox) -> None:
    before = _counts()
    with pytest.raises(CommandTimeout):
        local.run_command("sleep 30", timeout=0.2)
    after = _counts()
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
    assert sample("sandboxkit_command_duration_seconds_sum", backend="local") > 0.2


def test_a_command_after_teardown_counts_its_reason_and_no_duration(local: Sandbox) -> None:
    local.teardown()
    before = _counts()
    with pytest.raises(SandboxGone):
        local.run_command("true")
    after = _counts()
    assert (after[0] - before[0], after[2] - before[2]) == (0, 1)


def test_teardown_counts_an_active_sandbox_down_once(local: Sandbox) -> None:
    active = sample("sandboxkit_sandboxes_active", backend="local")
    local.teardown()
    local.teardown()
    assert sample("sandboxkit_sandboxes_active", backend="local") == active - 1
