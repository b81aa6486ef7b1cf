"""k8s/policies/ and k8s/deployment.yaml on a cluster, applied as their headers say.

The namespace labels, quota, limits, network policies, claim and disruption budget go into
the test namespace with ``kubectl apply -n``; a default sandbox must still start there and
be counted by the quota. NetworkPolicies are only checked to select the pods they are
written for (enforcing them is the network plugin's job). The JupyterLab Deployment is
applied with a server-side dry run: its image is built by the user, so no cluster can run
it as shipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.utils import parse_quantity
from workload_support import watch_until

from sandboxkit import KubernetesSandbox

K8S = Path(__file__).parents[2] / "k8s"
POLICIES = K8S / "policies"
NAMESPACED_POLICIES = ("resourcequota", "limitrange", "networkpolicy", "pvc", "pdb")


def _objects(path: Path) -> list[dict[str, Any]]:
    return [obj for obj in yaml.safe_load_all(path.read_text()) if obj]


@pytest.fixture
def policed(namespace: str, kubectl: Any) -> str:
    """The test namespace with the RBAC manifest and every policy file applied."""
    labelled = _objects(POLICIES / "namespace.yaml")[0]
    labelled["metadata"]["name"] = namespace
    result = kubectl("apply", "-f", "-", input=yaml.safe_dump(labelled))
    assert result.returncode == 0, result.stderr
    for path in [K8S / "rbac" / "k8s.yaml",
                 *(POLICIES / f"{name}.yaml" for name in NAMESPACED_POLICIES)]:
        result = kubectl("apply", "-n", namespace, "-f", str(path))
        assert result.returncode == 0, f"{path.name}: {result.stderr}"
        assert all(line.endswith(" created") for line in result.stdout.splitlines()), (
            result.stdout)
    return namespace


@pytest.fixture
def sandboxes(policed: str) -> Iterator[list[KubernetesSandbox]]:
    """Sandboxes with the default resources; each is torn down (and waited for) after."""
    made: list[KubernetesSandbox] = []
    yield made
    for sandbox in made:
        sandbox.teardown(wait=True)


def test_every_policy_object_exists_in_the_namespace(policed: str, kubectl: Any) -> None:
    for name in NAMESPACED_POLICIES:
        path = POLICIES / f"{name}.yaml"
        result = kubectl("get", "-n", policed, "-f", str(path), "-o", "name")
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.split()) == len(_objects(path))
    labels = kubectl("get", "namespace", policed, "-o", "jsonpath={.metadata.labels}")
    expected = _objects(POLICIES / "namespace.yaml")[0]["metadata"]["labels"]
    assert yaml.safe_load(labels.stdout).items() >= expected.items()


def _selects(policy: dict[str, Any], pod: Any) -> bool:
    wanted = policy["spec"]["podSelector"]["matchLabels"]
    return wanted.items() <= (pod.metadata.labels or {}).items()


def test_default_sandboxes_start_under_the_quota_and_the_policies_select_them(
    kubeconfig: Path, api_client: Any, policed: str, sandboxes: list[KubernetesSandbox],
) -> None:
    for allow_egress in (False, True):
        sandbox = KubernetesSandbox(image="busybox", namespace=policed,
                                    kubeconfig=str(kubeconfig), startup_timeout=120.0,
                                    allow_egress=allow_egress)
        sandboxes.append(sandbox)
        sandbox.init()
        assert sandbox.run_command("echo ok").stdout == "ok\n"

    core = client.CoreV1Api(api_client)
    pods = {}
    for sandbox in sandboxes:
        pod = core.read_namespaced_pod(sandbox.status().pod_name, policed)
        pods[sandbox.config.allow_egress] = pod
    isolation, egress = _objects(POLICIES / "networkpolicy.yaml")
    assert _selects(isolation, pods[False]) and _selects(isolation, pods[True])
    assert not _selects(egress, pods[False]) and _selects(egress, pods[True])

    # The quota counts both sandboxes' limits, within its hard limits.
    limits = [c.resources.limits for pod in pods.values() for c in pod.spec.containers]
    cpu_limit_total = sum(parse_quantity(limit["cpu"]) for limit in limits)
    _, quota = watch_until(
        core.list_namespaced_resource_quota,
        lambda _, q: q.status is not None and q.status.used is not None
        and parse_quantity(q.status.used.get("limits.cpu", "0")) == cpu_limit_total,
        policed)
    assert parse_quantity(quota.status.used["limits.cpu"]) <= parse_quantity(
        quota.status.hard["limits.cpu"])


def test_the_deployment_applies_and_passes_the_restricted_level(
    policed: str, kubectl: Any,
) -> None:
    result = kubectl("apply", "--dry-run=server", "-n", policed, "-f",
                     str(K8S / "deployment.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "deployment.apps/sandboxkit-jupyter created (server dry run)",
        "service/sandboxkit-jupyter created (server dry run)",
    ]
    assert "PodSecurity" not in result.stderr, result.stderr
    # Control: the namespace does warn about a workload that is not "restricted".
    plain = kubectl("create", "job", "plain", "--image=busybox", "--dry-run=server",
                    "-n", policed, "--", "true")
    assert plain.returncode == 0, plain.stderr
    assert 'would violate PodSecurity "restricted:latest"' in plain.stderr
