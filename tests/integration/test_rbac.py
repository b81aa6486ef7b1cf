"""Fidelity tests that drive the cluster only through the official client and kubectl: RBAC.

The RBAC manifest sandboxkit ships (k8s/rbac/k8s.yaml) is applied with ``kubectl apply``;
``kubectl auth can-i``, SelfSubjectAccessReviews and requests authenticated by TokenRequest
tokens must then agree on what the app's and the sandbox's ServiceAccounts may do.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from workload_support import job_manifest

RBAC_MANIFEST = (Path(__file__).parents[2] / "k8s" / "rbac" / "k8s.yaml").read_text()


@pytest.fixture
def rbac(namespace: str, kubectl: Any) -> str:
    """The test namespace with the RBAC manifest applied."""
    result = kubectl("apply", "-n", namespace, "-f", "-", input=RBAC_MANIFEST)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "serviceaccount/ci-fixer-app created",
        "serviceaccount/ci-fixer-sandbox created",
        "role.rbac.authorization.k8s.io/ci-fixer-sandbox-manager created",
        "rolebinding.rbac.authorization.k8s.io/ci-fixer-sandbox-binding created",
    ]
    return namespace


def _account(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def _token(api_client: Any, namespace: str, account: str) -> str:
    core = client.CoreV1Api(api_client)
    response = core.create_namespaced_service_account_token(
        account, namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)))
    assert response.status.token
    assert response.status.expiration_timestamp is not None
    return str(response.status.token)


@pytest.fixture
def as_account(api_client: Any) -> Iterator[Any]:
    """Make API clients that authenticate with a ServiceAccount's TokenRequest token."""
    made: list[client.ApiClient] = []

    def make(namespace: str, account: str) -> client.ApiClient:
        config = copy.copy(api_client.configuration)
        # only the bearer token may identify the caller: drop the admin's credentials
        config.cert_file = config.key_file = None
        config.username = config.password = None
        config.refresh_api_key_hook = None  # an exec plugin would put the admin token back
        config.api_key = {"authorization": _token(api_client, namespace, account)}
        config.api_key_prefix = {"authorization": "Bearer"}
        made.append(client.ApiClient(config))
        return made[-1]

    yield make
    for api in made:
        api.close()


@pytest.mark.parametrize(("account", "args", "answer"), [
    ("ci-fixer-app", ("create", "jobs.batch"), "yes"),
    ("ci-fixer-sandbox", ("create", "jobs.batch"), "no"),
    ("ci-fixer-app", ("create", "pods", "--subresource=exec"), "yes"),
    ("ci-fixer-sandbox", ("create", "pods", "--subresource=exec"), "no"),
    ("ci-fixer-app", ("get", "pods", "--subresource=log"), "yes"),
    ("ci-fixer-app", ("delete", "pods"), "yes"),
    ("ci-fixer-app", ("create", "pods"), "no"),
    ("ci-fixer-app", ("patch", "secrets"), "yes"),
    ("ci-fixer-app", ("list", "nodes"), "no"),
])
def test_kubectl_auth_can_i(rbac: str, kubectl: Any, account: str, args: tuple[str, ...],
                            answer: str) -> None:
    result = kubectl("auth", "can-i", *args, f"--as={_account(rbac, account)}", "-n", rbac)
    assert result.stdout.strip() == answer, result.stderr
    assert result.returncode == (0 if answer == "yes" else 1)


def test_reapplying_the_manifest_changes_nothing(rbac: str, kubectl: Any) -> None:
    result = kubectl("apply", "-n", rbac, "-f", "-", input=RBAC_MANIFEST)
    assert result.returncode == 0, result.stderr
    assert all(line.endswith(" unchanged") for line in result.stdout.splitlines()), (
        result.stdout)


def test_token_of_the_app_account_may_create_jobs(
    api_client: Any, rbac: str, as_account: Any
) -> None:
    app = as_account(rbac, "ci-fixer-app")
    review = client.AuthenticationV1Api(app).create_self_subject_review(
        client.V1SelfSubjectReview())
    assert review.status.user_info.username == _account(rbac, "ci-fixer-app")
    assert {"system:serviceaccounts", f"system:serviceaccounts:{rbac}",
            "system:authenticated"} <= set(review.status.user_info.groups)

    batch = client.BatchV1Api(app)
    created = batch.create_namespaced_job(rbac, job_manifest("by-app", ["true"]))
    assert created.metadata.name == "by-app"
    assert [j.metadata.name for j in batch.list_namespaced_job(rbac).items] == ["by-app"]
    with pytest.raises(ApiException) as denied:
        client.CoreV1Api(app).list_namespaced_pod("default")
    assert denied.value.status == 403
    body = json.loads(denied.value.body)
    assert body["message"] == (
        f'pods is forbidden: User "{_account(rbac, "ci-fixer-app")}" cannot list resource '
        '"pods" in API group "" in the namespace "default"')
    assert body["details"] == {"kind": "pods"}  # the core group is empty, so left out


def test_token_of_the_sandbox_account_is_forbidden_to_create_jobs(
    api_client: Any, rbac: str, as_account: Any
) -> None:
    sandbox = as_account(rbac, "ci-fixer-sandbox")
    with pytest.raises(ApiException) as denied:
        client.BatchV1Api(sandbox).create_namespaced_job(rbac, job_manifest("by-sandbox"))
    assert denied.value.status == 403
    body = json.loads(denied.value.body)
    user = _account(rbac, "ci-fixer-sandbox")
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["reason"] == "Forbidden" and body["code"] == 403
    assert body["message"] == (
        f'jobs.batch is forbidden: User "{user}" cannot create resource "jobs" in API group '
        f'"batch" in the namespace "{rbac}"')
    assert body["details"] == {"group": "batch", "kind": "jobs"}
    assert client.BatchV1Api(api_client).list_namespaced_job(rbac).items == []


def _self_review(api: Any, namespace: str, verb: str, resource: str, group: str = "",
                 subresource: str | None = None) -> Any:
    attributes = client.V1ResourceAttributes(namespace=namespace, verb=verb, group=group,
                                             resource=resource, subresource=subresource)
    return client.AuthorizationV1Api(api).create_self_subject_access_review(
        client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=attributes)))


def test_self_subject_access_review(api_client: Any, rbac: str, as_account: Any) -> None:
    app = as_account(rbac, "ci-fixer-app")
    review = _self_review(app, rbac, "create", "jobs", "batch")
    assert review.status.allowed is True
    assert review.status.denied is not True
    assert review.status.reason == (
        f'RBAC: allowed by RoleBinding "ci-fixer-sandbox-binding/{rbac}" of Role '
        f'"ci-fixer-sandbox-manager" to ServiceAccount "ci-fixer-app/{rbac}"')
    assert review.spec.resource_attributes.resource == "jobs"
    assert _self_review(app, rbac, "create", "pods", subresource="exec").status.allowed
    assert _self_review(app, rbac, "get", "pods", subresource="log").status.allowed
    assert not _self_review(app, rbac, "create", "pods").status.allowed
    assert not _self_review(app, "default", "get", "jobs", "batch").status.allowed

    sandbox = as_account(rbac, "ci-fixer-sandbox")
    assert not _self_review(sandbox, rbac, "create", "jobs", "batch").status.allowed
    assert not _self_review(sandbox, rbac, "create", "pods", subresource="exec").status.allowed
    # the admin kubeconfig may do anything
    assert _self_review(api_client, rbac, "create", "jobs", "batch").status.allowed
