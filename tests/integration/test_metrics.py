"""What a KubernetesSandbox's life records in sandboxkit's metrics, on a real cluster: one
creation and one startup per init(), failures under Kubernetes' reason, active sandboxes
counted down exactly once however often teardown() is called."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sandbox_support import MakeSandbox

from sandboxkit import KubernetesSandbox
from sandboxkit.errors import CommandTimeout, ImagePullError
from sandboxkit.metrics import REGISTRY

BACKEND = "kubernetes"


def snapshot() -> dict[str, float]:
    """Every kubernetes-backend sample, keyed by name and reason."""
    values: dict[str, float] = {}
    for family in REGISTRY.collect():
        for s in family.samples:
            if (s.labels.get("backend") == BACKEND and "le" not in s.labels
                    and not s.name.endswith("_created")):  # when a series began
                key = s.name + (f"{{{s.labels['reason']}}}" if "reason" in s.labels else "")
                values[key] = s.value
    return values


def changes(before: dict[str, float]) -> dict[str, float]:
    after = snapshot()
    return {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}


def test_a_sandbox_life_is_counted_once_each(make_sandbox: MakeSandbox) -> None:
    before = snapshot()
    sandbox = make_sandbox().init()
    try:
        started = changes(before)
        startup = started.pop("sandboxkit_startup_seconds_sum")
        assert started == {"sandboxkit_sandboxes_created_total": 1,
                           "sandboxkit_sandboxes_active": 1,
                           "sandboxkit_startup_seconds_count": 1}
        assert 0 < startup < 120
        sandbox.run_command("exit 3")
        with pytest.raises(CommandTimeout):
            sandbox.run_command("sleep 30", timeout=0.5)
    finally:
        sandbox.teardown()
        sandbox.teardown()  # idempotent, and so is the count
    ran = changes(before)
    assert ran["sandboxkit_command_duration_seconds_count"] == 2
    assert ran["sandboxkit_command_errors_total{Timeout}"] == 1
    assert "sandboxkit_sandboxes_active" not in ran  # back where it started


def test_attach_counts_an_active_sandbox_but_no_creation(
        kubeconfig: Path, namespace: str, make_sandbox: MakeSandbox) -> None:
    original = make_sandbox().init()
    before = snapshot()
    attached = KubernetesSandbox.attach(original.name, namespace, kubeconfig=str(kubeconfig))
    assert changes(before) == {"sandboxkit_sandboxes_active": 1}
    attached.teardown()
    assert changes(before) == {}


def test_a_failed_start_is_counted_under_its_reason_and_never_active(
        make_sandbox: MakeSandbox) -> None:
    before = snapshot()
    sandbox = make_sandbox(image="registry.invalid/nope:1")
    with pytest.raises(ImagePullError) as caught:
        sandbox.init()
    sandbox.teardown()
    assert changes(before) == {"sandboxkit_sandboxes_created_total": 1,
                               f"sandboxkit_sandboxes_failed_total{{{caught.value.reason}}}": 1}


def test_a_refused_create_is_a_failed_start_without_a_creation(
        kubeconfig: Path, api_client: Any) -> None:
    before = snapshot()
    sandbox = KubernetesSandbox(image="busybox", namespace="no-such-namespace-here",
                                kubeconfig=str(kubeconfig))
    with pytest.raises(Exception, match="does not exist"):
        sandbox.init()
    assert changes(before) == {"sandboxkit_sandboxes_failed_total{SandboxError}": 1}
