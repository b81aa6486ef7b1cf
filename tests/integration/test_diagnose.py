"""diagnose() and preflight() against failures produced for real on the test cluster.

Each failing sandbox is created with keep_on_failure=True, fails init() with its typed error,
is diagnosed, then torn down. Identities with too little RBAC authenticate with
TokenRequest tokens (workload_support.token_kubeconfig), as an agent's would.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from sandbox_support import MakeSandbox
from workload_support import token_kubeconfig, wait_job_finished, watch_until

from sandboxkit import KubernetesSandbox, diagnose, preflight, rbac
from sandboxkit.backends.kubernetes.client import connect
from sandboxkit.diagnostics import Diagnosis, Finding
from sandboxkit.errors import (
    ImagePullError,
    PermissionDenied,
    PodSecurityViolation,
    QuotaExceeded,
    SandboxGone,
    SandboxStartupError,
    ServiceAccountMissing,
    Unschedulable,
)

IMAGE = "busybox"
SMALL = {"cpu_request": "10m", "memory_request": "16Mi", "startup_timeout": 120.0}


@pytest.fixture
def ns(namespace: str, make_sandbox: MakeSandbox) -> str:
    """The test namespace with the sandbox ServiceAccount (as k8s/rbac/k8s.yaml makes):
    the ``make_sandbox`` fixture creates it."""
    return namespace


@pytest.fixture
def make(make_sandbox: MakeSandbox) -> MakeSandbox:
    """Unstarted sandboxes in ``ns`` that stay after a failed start, for diagnose() to read."""
    return partial(make_sandbox, keep_on_failure=True)


def _errors(diagnosis: Diagnosis) -> list[Finding]:
    return [f for f in diagnosis.findings if f.severity == "error"]


def _the_error(diagnosis: Diagnosis, reason: str) -> Finding:
    matches = [f for f in _errors(diagnosis) if f.reason == reason]
    assert matches, diagnosis.to_text()
    assert not diagnosis.ok
    return matches[0]


def _role_for(api_client: Any, ns: str, account: str, rules: list[dict[str, Any]]) -> None:
    api = client.RbacAuthorizationV1Api(api_client)
    api.create_namespaced_role(ns, {"metadata": {"name": account}, "rules": rules})
    api.create_namespaced_role_binding(ns, {
        "metadata": {"name": account},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}]})


def test_healthy_sandbox_is_ok(make: Any) -> None:
    sandbox = make().init()
    diagnosis = diagnose(sandbox)
    assert diagnosis.ok, diagnosis.to_text()
    (finding,) = [f for f in diagnosis.findings if f.severity == "ok"]
    assert sandbox.pod_name in finding.evidence and finding.reason == "Running"
    # The name alone, through a connection of our own, says the same.
    with_name = diagnose(sandbox.name, sandbox.namespace, connection=sandbox.connection)
    assert with_name.findings == diagnosis.findings
    assert list(with_name.to_frame()["severity"]) == ["ok"]


def test_healthy_as_the_app_identity(api_client: Any, ns: str, tmp_path: Path) -> None:
    """As ci-fixer-app (the seed Role, which has no events): still ok, with one warning
    saying the event evidence is missing and the rule that would add it."""
    kubeconfig = token_kubeconfig(api_client, ns, rbac.APP_SERVICE_ACCOUNT,
                                  tmp_path / "kubeconfig")
    admin = connect(api_client=api_client)
    rbac.apply(ns, connection=admin)
    admin.close()
    sandbox = KubernetesSandbox(IMAGE, kubeconfig=str(kubeconfig), **SMALL)
    try:
        diagnosis = diagnose(sandbox.init())
    finally:
        sandbox.teardown()
    assert diagnosis.ok, diagnosis.to_text()
    by_severity = {f.severity: f for f in diagnosis.findings}
    assert set(by_severity) == {"ok", "warning"}, diagnosis.to_text()
    assert "may not list events" in by_severity["warning"].title
    assert 'resources: ["events"]' in by_severity["warning"].fix


def test_bad_image(make: Any) -> None:
    image = "registry.invalid/sandboxkit/no-such-image:0.0.1"
    sandbox = make(image=image)
    with pytest.raises(ImagePullError) as caught:
        sandbox.init()
    finding = _the_error(diagnose(sandbox), caught.value.reason)
    assert finding.reason in ("ErrImagePull", "ImagePullBackOff")
    assert image in finding.title and f"docker manifest inspect {image}" in finding.fix
    assert f'Failed to pull image "{image}"' in diagnose(sandbox).findings[0].evidence


def test_invalid_image_name(make: Any) -> None:
    sandbox = make(image="UPPER/Case:Image")
    with pytest.raises(ImagePullError):
        sandbox.init()
    finding = _the_error(diagnose(sandbox), "InvalidImageName")
    assert "not a valid image reference" in finding.fix


def test_oversized_requests(make: Any) -> None:
    sandbox = make(cpu_request="1000", cpu_limit="1000")
    with pytest.raises(Unschedulable):
        sandbox.init()
    finding = _the_error(diagnose(sandbox), "FailedScheduling")
    assert "Insufficient cpu" in finding.evidence
    # The request as the API server stores it: canonical, so 1000 cores read "1k".
    assert "requests (cpu 1k)" in finding.title and "cpu_request=" in finding.fix


def test_tight_quota(make: Any, api_client: Any, ns: str) -> None:
    client.CoreV1Api(api_client).create_namespaced_resource_quota(
        ns, {"metadata": {"name": "tight"}, "spec": {"hard": {"requests.cpu": "5m"}}})
    sandbox = make()
    with pytest.raises(QuotaExceeded):
        sandbox.init()
    finding = _the_error(diagnose(sandbox), "FailedCreate")
    assert "exceeded quota: tight" in finding.evidence
    assert "Error creating: pods" in finding.evidence
    assert f"kubectl describe resourcequota tight -n {ns}" in finding.fix
    # preflight sees the same quota before any sandbox is tried.
    before = preflight(ns, connection=sandbox.connection)
    quota = [f for f in _errors(before) if f.reason == "ExceededQuota"]
    assert quota and "requests.cpu" in quota[0].title, before.to_text()


def test_missing_service_account(make: Any, ns: str) -> None:
    sandbox = make(service_account="no-such-account")
    with pytest.raises(ServiceAccountMissing):
        sandbox.init()
    finding = _the_error(diagnose(sandbox), "FailedCreate")
    assert 'serviceaccount "no-such-account" not found' in finding.evidence
    assert f"kubectl apply -n {ns} -f k8s/rbac/k8s.yaml" in finding.fix


def test_deadline_exceeded(make: Any, api_client: Any, ns: str) -> None:
    sandbox = make(active_deadline_seconds=3)
    # On a slow node the deadline may even strike during init(); either way it is gone.
    with pytest.raises((SandboxGone, SandboxStartupError)):
        sandbox.init()
        sandbox.run_command("sleep 60", timeout=60)
    wait_job_finished(client.BatchV1Api(api_client), ns, sandbox.name)
    finding = _the_error(diagnose(sandbox), "DeadlineExceeded")
    assert "active longer than specified deadline" in finding.evidence
    assert "activeDeadlineSeconds=3" in finding.title


def test_pod_security_rejection(make: Any, api_client: Any, ns: str) -> None:
    client.CoreV1Api(api_client).patch_namespace(ns, {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted"}}})
    sandbox = make()
    with pytest.raises(PodSecurityViolation):
        sandbox.init()
    finding = _the_error(diagnose(sandbox), "FailedCreate")
    assert 'violates PodSecurity "restricted:latest"' in finding.evidence
    assert "security_profile='restricted'" in finding.fix


def test_job_deleted(make: Any) -> None:
    sandbox = make().init()
    sandbox.teardown(wait=True)
    finding = _the_error(diagnose(sandbox), "NotFound")
    assert f'jobs.batch "{sandbox.name}" not found' in finding.evidence


def test_exec_forbidden(api_client: Any, ns: str, tmp_path: Path) -> None:
    """A Role that runs sandboxes but lacks pods/exec: the sandbox starts, commands are
    refused, and diagnose names the missing rule for that identity."""
    kubeconfig = token_kubeconfig(api_client, ns, "no-exec", tmp_path / "kubeconfig")
    _role_for(api_client, ns, "no-exec", [
        {"apiGroups": ["batch"], "resources": ["jobs"],
         "verbs": ["create", "get", "list", "watch", "delete"]},
        {"apiGroups": [""], "resources": ["pods", "events"], "verbs": ["get", "list", "watch"]},
    ])
    sandbox = KubernetesSandbox(IMAGE, kubeconfig=str(kubeconfig), **SMALL)
    try:
        sandbox.init()
        with pytest.raises(PermissionDenied):
            sandbox.run_command("true")
        diagnosis = diagnose(sandbox)
    finally:
        sandbox.teardown()
    finding = _the_error(diagnosis, "Forbidden")
    assert f"system:serviceaccount:{ns}:no-exec may not create pods/exec" in finding.title
    assert 'resources: ["pods/exec"]' in finding.fix and 'verbs: ["create"]' in finding.fix
    assert any(f.severity == "ok" for f in diagnosis.findings)  # it runs, though


def test_create_forbidden(api_client: Any, ns: str, tmp_path: Path) -> None:
    """A Role without jobs: the Job never exists; diagnose by name says who may not do what."""
    kubeconfig = token_kubeconfig(api_client, ns, "no-jobs", tmp_path / "kubeconfig")
    _role_for(api_client, ns, "no-jobs",
              [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}])
    sandbox = KubernetesSandbox(IMAGE, kubeconfig=str(kubeconfig), **SMALL)
    with pytest.raises(PermissionDenied):
        sandbox.init()
    conn = connect(str(kubeconfig))
    try:
        diagnosis = diagnose(sandbox.name, connection=conn)
    finally:
        conn.close()
    titles = [f.title for f in _errors(diagnosis)]
    identity = f"system:serviceaccount:{ns}:no-jobs"
    assert f"{identity} may not get jobs.batch in namespace {ns}" in titles, titles
    assert f"{identity} may not create jobs.batch in namespace {ns}" in titles, titles


def test_rbac_not_installed_and_preflight(kubeconfig: Path, namespace: str,
                                          api_client: Any) -> None:
    conn = connect(str(kubeconfig))
    try:
        missing = diagnose("never-created", namespace, connection=conn)
        rbac_finding = _the_error(missing, "NotFound")  # the Job first ...
        assert "does not exist" in rbac_finding.title
        installed = [f for f in _errors(missing) if "RBAC" in f.title]
        assert installed and "role/ci-fixer-sandbox-manager" in installed[0].evidence
        before = preflight(namespace, connection=conn)
        assert not before.ok and any("RBAC" in f.title for f in _errors(before))
        rbac.apply(namespace, connection=conn)
        core = client.CoreV1Api(api_client)
        core.create_namespaced_resource_quota(
            namespace, {"metadata": {"name": "three"}, "spec": {"hard": {"pods": "3"}}})
        watch_until(core.list_namespaced_resource_quota,
                    lambda _, q: bool(q.status and q.status.used), namespace)
        after = preflight(namespace, image=IMAGE, connection=conn)
        assert after.ok, after.to_text()
        assert after.findings[0].reason == "Reachable"
        room = [f for f in after.findings if f.reason == "QuotaRoom"]
        assert room and "room for 3 more sandboxes" in room[0].title, after.to_text()
        gone = preflight("no-such-namespace-skt", connection=conn)
        assert [f.reason for f in gone.findings] == ["Reachable", "NotFound"]
    finally:
        conn.close()
