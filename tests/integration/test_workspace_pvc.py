"""A PersistentVolumeClaim as the sandbox's workspace: its data outlives the sandbox.

Runs unchanged on a cluster with a default StorageClass (kind's binds on first consumer):
nothing here waits for the claim to bind before a sandbox uses it.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from sandbox_support import MakeSandbox

from sandboxkit.errors import Unschedulable

pytestmark = pytest.mark.integration

CLAIM = "ci-workspace"


@pytest.fixture
def claim(api_client: Any, namespace: str) -> str:
    client.CoreV1Api(api_client).create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": CLAIM},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "16Mi"}}},
    })
    return CLAIM


def test_workspace_outlives_the_sandbox(
    make_sandbox: MakeSandbox, api_client: Any, namespace: str, claim: str,
) -> None:
    first = make_sandbox(workspace_pvc=claim).init()
    # without a workdir, commands start in the workspace
    assert first.run_command("pwd", check=True).stdout.strip() == "/workspace"
    first.run_command("echo kept > x", check=True)
    first.teardown(wait=True)

    bound = client.CoreV1Api(api_client).read_namespaced_persistent_volume_claim(
        claim, namespace)
    assert bound.status.phase == "Bound" and bound.spec.volume_name

    second = make_sandbox(workspace_pvc=claim, workspace_path="/data").init()
    assert second.run_command("cat /data/x", check=True).stdout == "kept\n"
    assert second.run_command("cat /workspace/x").exit_code != 0  # mounted where asked only


def test_restricted_sandbox_can_write_its_workspace(
    make_sandbox: MakeSandbox, claim: str,
) -> None:
    sandbox = make_sandbox(workspace_pvc=claim, security_profile="restricted").init()
    result = sandbox.run_command("echo mine > /workspace/y && cat /workspace/y")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "mine\n"


def test_a_missing_claim_is_reported_as_unschedulable(make_sandbox: MakeSandbox) -> None:
    sandbox = make_sandbox(workspace_pvc="no-such-claim")
    with pytest.raises(Unschedulable) as caught:
        sandbox.init()
    assert 'persistentvolumeclaim "no-such-claim" not found' in str(caught.value)
