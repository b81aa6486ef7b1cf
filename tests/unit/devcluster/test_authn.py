"""Authentication and impersonation as kube-apiserver performs them."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from multidict import CIMultiDict

from sandboxkit.devcluster.api import User
from sandboxkit.devcluster.authn import CertSubject, authenticate, impersonate
from sandboxkit.devcluster.authz import Attributes, Decision, RbacAuthorizer
from sandboxkit.devcluster.bootstrap import bootstrap_objects
from sandboxkit.devcluster.errors import ApiError
from sandboxkit.devcluster.tokens import TokenIssuer

SERVICE_ACCOUNTS = {("ns1", "runner"): "sa-uid"}
PODS = {("ns1", "p1"): "pod-uid"}


@pytest.fixture(scope="module")
def issuer() -> TokenIssuer:
    return TokenIssuer(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def deny_all(attrs: Attributes) -> Decision:
    return Decision(False)


def login(issuer: TokenIssuer, headers: Any, cert: CertSubject | None = None,
          authorize: Any = deny_all) -> User:
    return authenticate(
        cert, headers, issuer.verify,
        lambda ns, name: SERVICE_ACCOUNTS.get((ns, name)),
        lambda ns, name: PODS.get((ns, name)),
        authorize=authorize,
    )


def test_client_certificate_identity(issuer: TokenIssuer) -> None:
    peer = {"subject": ((("organizationName", "system:masters"),),
                        (("organizationName", "devs"),),
                        (("commonName", "sandboxkit-admin"),))}
    cert = CertSubject.from_peercert(peer)
    assert cert == CertSubject("sandboxkit-admin", ("system:masters", "devs"))
    user = login(issuer, {"Authorization": "Bearer garbage"}, cert)
    assert user == User("sandboxkit-admin", ("system:masters", "devs", "system:authenticated"))
    assert CertSubject.from_peercert({}) is None
    assert CertSubject.from_peercert(None) is None


def test_service_account_token_identity(issuer: TokenIssuer) -> None:
    token = issuer.issue("ns1", "runner", "sa-uid").token
    user = login(issuer, {"authorization": f"Bearer {token}"})
    assert user.name == "system:serviceaccount:ns1:runner"
    assert user.groups == ("system:serviceaccounts", "system:serviceaccounts:ns1",
                           "system:authenticated")
    assert user.uid == "sa-uid"
    assert user.extra["authentication.kubernetes.io/credential-id"][0].startswith("JTI=")


def test_pod_bound_token_carries_pod_extras_and_dies_with_the_pod(issuer: TokenIssuer) -> None:
    token = issuer.issue("ns1", "runner", "sa-uid", pod=("p1", "pod-uid")).token
    user = login(issuer, {"Authorization": f"Bearer {token}"})
    assert user.extra["authentication.kubernetes.io/pod-name"] == ("p1",)
    assert user.extra["authentication.kubernetes.io/pod-uid"] == ("pod-uid",)
    stale = issuer.issue("ns1", "runner", "sa-uid", pod=("p1", "old-uid")).token
    with pytest.raises(ApiError) as err:
        login(issuer, {"Authorization": f"Bearer {stale}"})
    assert err.value.code == 401


@pytest.mark.parametrize(
    ("namespace", "name", "uid"),
    [("ns1", "deleted", "x"), ("ns1", "runner", "recreated-uid")],
)
def test_token_for_missing_or_recreated_service_account_is_unauthorized(
    issuer: TokenIssuer, namespace: str, name: str, uid: str,
) -> None:
    token = issuer.issue(namespace, name, uid).token
    with pytest.raises(ApiError) as err:
        login(issuer, {"Authorization": f"Bearer {token}"})
    assert err.value.status() == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Unauthorized", "reason": "Unauthorized", "code": 401,
    }


def test_expired_and_bad_tokens_are_unauthorized() -> None:
    clock = [1_700_000_000.0]
    issuer = TokenIssuer(rsa.generate_private_key(public_exponent=65537, key_size=2048),
                         clock=lambda: clock[0])
    token = issuer.issue("ns1", "runner", "sa-uid", 600).token
    assert login(issuer, {"Authorization": f"Bearer {token}"}).uid == "sa-uid"
    clock[0] += 3600
    for header in (f"Bearer {token}", "Bearer not.a.jwt", "bearer abc"):
        with pytest.raises(ApiError) as err:
            login(issuer, {"Authorization": header})
        assert err.value.code == 401


def test_anonymous_without_credentials(issuer: TokenIssuer) -> None:
    assert login(issuer, {}) == User("system:anonymous", ("system:unauthenticated",))
    assert login(issuer, {"Authorization": "Basic dXNlcjpwdw=="}).name == "system:anonymous"
    assert login(issuer, {"Authorization": "Bearer"}).name == "system:anonymous"


def rbac(*extra: dict[str, Any]) -> RbacAuthorizer:
    objects = [*bootstrap_objects(), *extra]

    def lister(kind: str, namespace: str | None) -> list[dict[str, Any]]:
        return [o for o in objects
                if o["kind"] == kind and o["metadata"].get("namespace") == namespace]
    return RbacAuthorizer(lister)


ALICE = User("alice", ("system:authenticated",))


def test_impersonating_service_account_needs_permission_and_adds_sa_groups() -> None:
    headers = {"Impersonate-User": "system:serviceaccount:ns1:runner"}
    with pytest.raises(ApiError) as err:
        impersonate(ALICE, headers, rbac().authorize)
    assert err.value.code == 403
    assert err.value.message == (
        'serviceaccounts "runner" is forbidden: User "alice" cannot impersonate resource '
        '"serviceaccounts" in API group "" in the namespace "ns1"'
    )
    editor = {
        "kind": "RoleBinding", "metadata": {"name": "alice-edit", "namespace": "ns1"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "edit"},
        "subjects": [{"kind": "User", "name": "alice"}],
    }
    user = impersonate(ALICE, headers, rbac(editor).authorize)
    assert user == User(
        "system:serviceaccount:ns1:runner",
        ("system:serviceaccounts", "system:serviceaccounts:ns1", "system:authenticated"),
    )


def test_impersonating_user_denied_wording() -> None:
    with pytest.raises(ApiError) as err:
        impersonate(ALICE, {"Impersonate-User": "bob"}, rbac().authorize)
    assert err.value.message == (
        'users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API '
        'group "" at the cluster scope'
    )


def test_masters_impersonate_user_groups_uid_and_extras() -> None:
    admin = User("sandboxkit-admin", ("system:masters", "system:authenticated"))
    headers = CIMultiDict([
        ("Impersonate-User", "bob"),
        ("Impersonate-Group", "devs"),
        ("Impersonate-Group", "ops"),
        ("Impersonate-Uid", "bob-uid"),
        ("Impersonate-Extra-Scopes", "view"),
        ("Impersonate-Extra-Scopes", "edit"),
        ("Impersonate-Extra-Example.com%2fteam", "a"),
    ])
    checked: list[Attributes] = []

    def allow(attrs: Attributes) -> Decision:
        checked.append(attrs)
        return rbac().authorize(attrs)

    user = impersonate(admin, headers, allow)
    assert user == User("bob", ("devs", "ops", "system:authenticated"), "bob-uid",
                        {"scopes": ("view", "edit"), "example.com/team": ("a",)})
    assert [(a.resource, a.api_group, a.subresource, a.name) for a in checked] == [
        ("users", "", "", "bob"),
        ("groups", "", "", "devs"),
        ("groups", "", "", "ops"),
        ("userextras", "authentication.k8s.io", "scopes", "view"),
        ("userextras", "authentication.k8s.io", "scopes", "edit"),
        ("userextras", "authentication.k8s.io", "example.com/team", "a"),
        ("uids", "authentication.k8s.io", "", "bob-uid"),
    ]


def test_impersonation_group_rules() -> None:
    admin = User("root", ("system:masters",))
    allow = rbac().authorize
    sa = impersonate(admin, CIMultiDict([("Impersonate-User", "system:serviceaccount:ns1:r"),
                                         ("Impersonate-Group", "g")]), allow)
    # Explicit groups replace the ServiceAccount's implied ones.
    assert sa.groups == ("g", "system:authenticated")
    unauth = impersonate(admin, CIMultiDict([("Impersonate-User", "x"),
                                             ("Impersonate-Group", "system:unauthenticated")]),
                         allow)
    assert unauth.groups == ("system:unauthenticated",)
    anon = impersonate(admin, {"Impersonate-User": "system:anonymous"}, allow)
    assert anon.groups == ("system:unauthenticated",)
    odd = impersonate(admin, {"Impersonate-User": "system:serviceaccount:Bad_NS:x"}, allow)
    assert odd.groups == ("system:authenticated",)
    assert impersonate(admin, {"Accept": "application/json"}, allow) is admin


def test_groups_without_user_is_bad_request() -> None:
    with pytest.raises(ApiError) as err:
        impersonate(ALICE, {"Impersonate-Group": "devs"}, rbac().authorize)
    assert err.value.code == 400
    assert err.value.message == "requested [{Group  devs    }] without impersonating a user"


def test_authenticate_applies_impersonation(issuer: TokenIssuer) -> None:
    cert = CertSubject("sandboxkit-admin", ("system:masters",))
    user = login(issuer, {"Impersonate-User": "system:serviceaccount:ns1:runner"}, cert,
                 rbac().authorize)
    assert user.name == "system:serviceaccount:ns1:runner"
