"""k8s/rbac/k8s.yaml and sandboxkit.rbac against a cluster: apply, act as each account, verify.

Acting as an account means what it means in production: a TokenRequest token for the
ServiceAccount and a client that sends only that bearer token to the cluster's host, CA
checked. The expected rules are read from the manifest, not from the code under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from workload_support import job_manifest

from sandboxkit import KubernetesSandbox, rbac
from sandboxkit.backends.kubernetes.client import Connection, connect
from sandboxkit.backends.kubernetes.exec import run_exec
from sandboxkit.errors import PermissionDenied, ServiceAccountMissing

MANIFEST = Path(__file__).parents[2] / "k8s" / "rbac" / "k8s.yaml"
PART_OF = "app.kubernetes.io/part-of=sandboxkit"
SMALL = {"image": "busybox", "cpu_request": "10m", "memory_request": "16Mi",
         "startup_timeout": 120.0}


def _rule_table(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    table: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                table.setdefault((group, resource), set()).update(rule["verbs"])
    return table


def _manifest_role_table() -> dict[tuple[str, str], set[str]]:
    (role,) = [o for o in yaml.safe_load_all(MANIFEST.read_text()) if o and o["kind"] == "Role"]
    return _rule_table(role["rules"])


@pytest.fixture
def admin(api_client: Any) -> Iterator[Connection]:
    conn = connect(api_client=api_client)
    yield conn
    conn.close()


@pytest.fixture
def token_client(admin: Connection) -> Iterator[Any]:
    """Make ApiClients that authenticate only as a ServiceAccount (``rbac.connect_as``)."""
    made: list[Connection] = []

    def make(namespace: str, account: str) -> client.ApiClient:
        made.append(rbac.connect_as(account, namespace, connection=admin,
                                    expiration_seconds=600))
        return made[-1].api_client()

    yield make
    for conn in made:
        conn.close()


@pytest.fixture
def installed(namespace: str, admin: Connection) -> str:
    """The test namespace with sandboxkit's RBAC applied through sandboxkit.rbac."""
    assert all(line.endswith(" created") for line in rbac.apply(namespace, connection=admin))
    return namespace


def _uids(api_client: Any, namespace: str) -> dict[str, str]:
    core, auth = client.CoreV1Api(api_client), client.RbacAuthorizationV1Api(api_client)
    objects = [*core.list_namespaced_service_account(namespace, label_selector=PART_OF).items,
               *auth.list_namespaced_role(namespace, label_selector=PART_OF).items,
               *auth.list_namespaced_role_binding(namespace, label_selector=PART_OF).items]
    return {f"{o.kind or type(o).__name__}/{o.metadata.name}": o.metadata.uid for o in objects}


def test_kubectl_applies_the_manifest_into_the_namespace_given(
    namespace: str, kubectl: Any, admin: Connection,
) -> None:
    result = kubectl("apply", "-n", namespace, "-f", str(MANIFEST))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "serviceaccount/ci-fixer-app created",
        "serviceaccount/ci-fixer-sandbox created",
        "role.rbac.authorization.k8s.io/ci-fixer-sandbox-manager created",
        "rolebinding.rbac.authorization.k8s.io/ci-fixer-sandbox-binding created",
    ]
    # The binding's subject names no namespace: the authorizer must take the binding's.
    report = rbac.verify(namespace, rbac.APP_SERVICE_ACCOUNT, connection=admin)
    assert report["ok"].all(), report.attrs["verdict"]
    assert report.attrs["verdict"] == f"ci-fixer-app in {namespace}: all {len(report)} checks pass"


def test_apply_twice_changes_nothing_and_keeps_tokens_valid(
    installed: str, api_client: Any, admin: Connection, token_client: Any,
) -> None:
    uids = _uids(api_client, installed)
    assert len(uids) == 4
    app = token_client(installed, rbac.APP_SERVICE_ACCOUNT)

    again = rbac.apply(installed, connection=admin)

    assert [line.rsplit(" ", 1)[0] for line in again] == [
        "serviceaccount/ci-fixer-app", "serviceaccount/ci-fixer-sandbox",
        "role.rbac.authorization.k8s.io/ci-fixer-sandbox-manager",
        "rolebinding.rbac.authorization.k8s.io/ci-fixer-sandbox-binding"]
    assert {line.rsplit(" ", 1)[1] for line in again} <= {"unchanged", "configured"}
    assert _uids(api_client, installed) == uids
    # A token is bound to its ServiceAccount's uid: it still authenticates.
    review = client.AuthenticationV1Api(app).create_self_subject_review(
        client.V1SelfSubjectReview())
    assert review.status.user_info.username == (
        f"system:serviceaccount:{installed}:ci-fixer-app")


def test_the_app_account_runs_a_whole_sandbox_lifecycle(
    installed: str, api_client: Any, token_client: Any,
) -> None:
    app_client = token_client(installed, rbac.APP_SERVICE_ACCOUNT)
    with KubernetesSandbox(namespace=installed, api_client=app_client, **SMALL) as sandbox:
        result = sandbox.run_command("echo from-$(hostname)")
        assert result.exit_code == 0, result.stderr
        assert result.stdout.startswith("from-")
        # The Role grants no events: status() does without them rather than fail.
        status = sandbox.status()
        assert status.running and status.pod_name == sandbox.pod_name
        name = sandbox.name
    sandbox.teardown(wait=True)
    jobs = client.BatchV1Api(api_client).list_namespaced_job(installed).items
    assert name not in [job.metadata.name for job in jobs]

    own = connect(api_client=app_client)
    try:
        report = rbac.verify(installed, connection=own)  # SelfSubjectAccessReviews
        assert report.attrs["identity"] == f"system:serviceaccount:{installed}:ci-fixer-app"
        assert report["ok"].all(), report.attrs["verdict"]
        # Asking about another identity needs cluster-wide SubjectAccessReviews.
        with pytest.raises(PermissionDenied, match="subjectaccessreviews") as denied:
            rbac.verify(installed, rbac.SANDBOX_SERVICE_ACCOUNT, connection=own)
        assert denied.value.identity == f"system:serviceaccount:{installed}:ci-fixer-app"
    finally:
        own.close()


def test_the_sandbox_account_may_do_nothing(
    installed: str, api_client: Any, admin: Connection, token_client: Any,
) -> None:
    sandbox_client = token_client(installed, rbac.SANDBOX_SERVICE_ACCOUNT)
    with pytest.raises(ApiException) as denied:
        client.BatchV1Api(sandbox_client).create_namespaced_job(
            installed, job_manifest("from-inside", ["true"]))
    assert denied.value.status == 403

    with KubernetesSandbox(namespace=installed, api_client=api_client, **SMALL) as sandbox:
        pod = sandbox.status().pod_name
        assert pod
        with pytest.raises(PermissionDenied) as exec_denied:
            run_exec(sandbox_client, installed, pod, "sandbox", ["true"])
        assert exec_denied.value.resource == "pods/exec"

    report = rbac.verify(installed, rbac.SANDBOX_SERVICE_ACCOUNT, connection=admin)
    assert not report["expected"].any()
    assert not report["allowed"].any(), report[report["allowed"]]
    assert report["ok"].all()
    assert report.attrs["missing_yaml"] == ""


def test_verify_before_apply_lists_the_rules_to_add(namespace: str, admin: Connection) -> None:
    report = rbac.verify(namespace, rbac.APP_SERVICE_ACCOUNT, connection=admin)

    failing = report[~report["ok"]]
    assert failing["expected"].all()  # nothing forbidden is allowed, only grants are missing
    assert report.attrs["verdict"].startswith(
        f"ci-fixer-app in {namespace}: {len(failing)} of {len(report)} checks fail: ")
    missing = yaml.safe_load(report.attrs["missing_yaml"])
    assert _rule_table(missing["rules"]) == _manifest_role_table()


def test_verify_names_exactly_the_permission_taken_away(
    installed: str, api_client: Any, admin: Connection,
) -> None:
    auth = client.RbacAuthorizationV1Api(api_client)
    role = auth.read_namespaced_role(rbac.ROLE_NAME, installed)
    jobs_rule = next(r for r in role.rules if r.resources == ["jobs"])
    jobs_rule.verbs = [v for v in jobs_rule.verbs if v != "create"]
    auth.replace_namespaced_role(rbac.ROLE_NAME, installed, role)

    report = rbac.verify(installed, rbac.APP_SERVICE_ACCOUNT, connection=admin)

    failing = report[~report["ok"]]
    assert failing[["api_group", "resource", "verb"]].values.tolist() == [
        ["batch", "jobs", "create"]]
    assert report.attrs["verdict"] == (
        f"ci-fixer-app in {installed}: 1 of {len(report)} checks fail: jobs create denied")
    assert yaml.safe_load(report.attrs["missing_yaml"]) == {
        "rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]}]}


def test_uninstall_removes_what_apply_made(
    installed: str, api_client: Any, admin: Connection,
) -> None:
    removed = rbac.uninstall(installed, connection=admin)

    assert removed == [
        'rolebinding.rbac.authorization.k8s.io "ci-fixer-sandbox-binding" deleted',
        'role.rbac.authorization.k8s.io "ci-fixer-sandbox-manager" deleted',
        'serviceaccount "ci-fixer-sandbox" deleted',
        'serviceaccount "ci-fixer-app" deleted',
    ]
    assert _uids(api_client, installed) == {}
    assert all(line.endswith(" not found")
               for line in rbac.uninstall(installed, connection=admin))


def test_connect_as_authenticates_as_the_account_with_its_token_only(
    installed: str, admin: Connection,
) -> None:
    app = rbac.connect_as(rbac.APP_SERVICE_ACCOUNT, installed, connection=admin)
    try:
        review = client.AuthenticationV1Api(app.api_client()).create_self_subject_review(
            client.V1SelfSubjectReview())
        assert review.status.user_info.username == (
            f"system:serviceaccount:{installed}:ci-fixer-app")
        assert app.namespace == installed
        assert app.configuration.host == admin.configuration.host
        # Nothing of the admin's identity travels along: no client certificate, no key.
        assert app.configuration.cert_file is None and app.configuration.key_file is None
        token = app.configuration.api_key["authorization"].removeprefix("Bearer ")
        assert len(token) > 20
        assert token not in repr(app) and token not in app.source
        # The Role lets the app account list Jobs; it gives it no ServiceAccount tokens.
        assert client.BatchV1Api(app.api_client()).list_namespaced_job(installed).items == []
        with pytest.raises(PermissionDenied) as denied:
            rbac.connect_as(rbac.SANDBOX_SERVICE_ACCOUNT, installed, connection=app)
        assert denied.value.resource == "serviceaccounts/token"
        assert token not in str(denied.value)
    finally:
        app.close()


def test_connect_as_a_missing_account_says_how_to_create_it(
    namespace: str, admin: Connection,
) -> None:
    with pytest.raises(ServiceAccountMissing, match=f"rbac apply -n {namespace}"):
        rbac.connect_as(rbac.APP_SERVICE_ACCOUNT, namespace, connection=admin)
