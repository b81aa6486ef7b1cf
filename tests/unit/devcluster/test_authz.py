"""The RBAC authorizer against the cases Kubernetes' rbac plugin decides."""

from __future__ import annotations

from typing import Any

import pytest

from sandboxkit.devcluster.api import User
from sandboxkit.devcluster.authz import (
    Attributes,
    Decision,
    RbacAuthorizer,
    access_review_status,
    aggregate_error,
    forbidden_error,
    review_attributes,
    review_user,
    rule_allows,
)
from sandboxkit.devcluster.bootstrap import bootstrap_objects

RBAC = "rbac.authorization.k8s.io"
SA_USER = User(
    "system:serviceaccount:ns1:runner",
    ("system:serviceaccounts", "system:serviceaccounts:ns1", "system:authenticated"),
)
ALICE = User("alice", ("devs", "system:authenticated"))


def role(name: str, rules: list[dict[str, Any]], namespace: str | None = None,
         **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **extra.pop("meta", {})}
    if namespace:
        meta["namespace"] = namespace
    return {"kind": "Role" if namespace else "ClusterRole", "metadata": meta,
            "rules": rules, **extra}


def binding(name: str, role_kind: str, role_name: str, subjects: list[dict[str, Any]],
            namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {
        "kind": "RoleBinding" if namespace else "ClusterRoleBinding",
        "metadata": meta,
        "roleRef": {"apiGroup": RBAC, "kind": role_kind, "name": role_name},
        "subjects": subjects,
    }


def rule(verbs: list[str], groups: list[str] | None = None, resources: list[str] | None = None,
         names: list[str] | None = None, urls: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"verbs": verbs}
    if groups is not None:
        out["apiGroups"] = groups
    if resources is not None:
        out["resources"] = resources
    if names is not None:
        out["resourceNames"] = names
    if urls is not None:
        out["nonResourceURLs"] = urls
    return out


def authorizer(*objects: dict[str, Any]) -> RbacAuthorizer:
    def lister(kind: str, namespace: str | None) -> list[dict[str, Any]]:
        return [o for o in objects
                if o["kind"] == kind and o["metadata"].get("namespace") == namespace]
    return RbacAuthorizer(lister)


def sa_binding(name: str, role_kind: str, role_name: str, namespace: str = "ns1",
               subject_namespace: str | None = "ns1") -> dict[str, Any]:
    subject = {"kind": "ServiceAccount", "name": "runner"}
    if subject_namespace:
        subject["namespace"] = subject_namespace
    return binding(name, role_kind, role_name, [subject], namespace)


def attrs(user: User = SA_USER, verb: str = "get", resource: str = "pods", **kw: Any) -> Attributes:
    kw.setdefault("namespace", "ns1")
    return Attributes(user=user, verb=verb, resource=resource, **kw)


def test_rolebinding_grants_in_its_namespace_only_with_kubernetes_reason() -> None:
    authz = authorizer(
        role("pod-reader", [rule(["get", "list"], [""], ["pods"])], "ns1"),
        sa_binding("read-pods", "Role", "pod-reader"),
    )
    decision = authz.authorize(attrs())
    assert decision == Decision(
        True,
        'RBAC: allowed by RoleBinding "read-pods/ns1" of Role "pod-reader" to '
        'ServiceAccount "runner/ns1"',
    )
    assert not authz.authorize(attrs(namespace="ns2")).allowed
    assert not authz.authorize(attrs(namespace="")).allowed
    assert not authz.authorize(attrs(verb="delete")).allowed
    assert not authz.authorize(attrs(api_group="apps")).allowed


def test_service_account_subject_namespace_defaults_to_binding_namespace() -> None:
    authz = authorizer(
        role("pod-reader", [rule(["get"], [""], ["pods"])], "ns1"),
        sa_binding("implicit", "Role", "pod-reader", subject_namespace=None),
    )
    decision = authz.authorize(attrs())
    assert decision.reason.endswith('to ServiceAccount "runner/ns1"')
    other = User("system:serviceaccount:ns2:runner", ())
    assert not authz.authorize(attrs(user=other)).allowed


def test_service_account_subject_in_other_namespace_is_honoured() -> None:
    authz = authorizer(
        role("pod-reader", [rule(["get"], [""], ["pods"])], "team"),
        sa_binding("cross", "Role", "pod-reader", namespace="team", subject_namespace="ns1"),
    )
    assert authz.authorize(attrs(namespace="team")).allowed


def test_cluster_role_binding_grants_everywhere_and_at_cluster_scope() -> None:
    authz = authorizer(
        role("node-reader", [rule(["get", "list"], [""], ["nodes", "pods"])]),
        binding("readers", "ClusterRole", "node-reader", [{"kind": "Group", "name": "devs"}]),
    )
    assert authz.authorize(attrs(ALICE, namespace="")).allowed
    assert authz.authorize(attrs(ALICE, namespace="anything")).allowed
    assert authz.authorize(attrs(ALICE, resource="nodes", namespace="")).reason == (
        'RBAC: allowed by ClusterRoleBinding "readers" of ClusterRole "node-reader" to Group "devs"'
    )
    assert not authz.authorize(attrs(SA_USER, namespace="")).allowed


def test_rolebinding_to_cluster_role_is_namespaced() -> None:
    authz = authorizer(
        role("job-runner", [rule(["*"], ["batch"], ["jobs"])]),
        binding("alice-jobs", "ClusterRole", "job-runner", [{"kind": "User", "name": "alice"}],
                "ns1"),
    )
    assert authz.authorize(attrs(ALICE, "create", "jobs", api_group="batch")).reason == (
        'RBAC: allowed by RoleBinding "alice-jobs/ns1" of ClusterRole "job-runner" to User "alice"'
    )
    assert not authz.authorize(attrs(ALICE, "create", "jobs", api_group="batch",
                                     namespace="ns2")).allowed
    assert not authz.authorize(attrs(ALICE, "list", "jobs", api_group="batch",
                                     namespace="")).allowed


def test_system_masters_always_allowed_without_rbac() -> None:
    admin = User("sandboxkit-admin", ("system:masters", "system:authenticated"))
    assert authorizer().authorize(attrs(admin, "delete", "nodes", namespace="")) == Decision(True)


@pytest.mark.parametrize(
    ("rule_resources", "resource", "subresource", "allowed"),
    [
        (["pods"], "pods", "", True),
        (["pods"], "pods", "exec", False),
        (["pods/exec"], "pods", "exec", True),
        (["pods/exec"], "pods", "", False),
        (["*"], "pods", "log", True),
        (["*/scale"], "deployments", "scale", True),
        (["*/scale"], "deployments", "status", False),
        (["*/scale"], "deployments", "", False),
        (["pods/*"], "pods", "exec", False),
    ],
)
def test_resource_and_subresource_matching(
    rule_resources: list[str], resource: str, subresource: str, allowed: bool,
) -> None:
    r = rule(["*"], ["*"], rule_resources)
    assert rule_allows(attrs(resource=resource, subresource=subresource), r) is allowed


def test_wildcards_for_verbs_and_groups() -> None:
    r = rule(["*"], ["*"], ["*"])
    assert rule_allows(attrs(verb="impersonate", api_group="anything.io", resource="x"), r)
    exact = rule(["get"], [""], ["pods"])
    # A request for verb "*" (e.g. a SubjectAccessReview asking "everything?") needs a "*" rule.
    assert not rule_allows(attrs(verb="*"), exact)
    assert rule_allows(attrs(verb="*"), rule(["*"], [""], ["pods"]))


def test_rule_without_api_groups_matches_nothing() -> None:
    assert not rule_allows(attrs(), rule(["get"], None, ["pods"]))


@pytest.mark.parametrize(
    ("verb", "name", "allowed"),
    [
        ("get", "sandbox-1", True),
        ("delete", "sandbox-1", True),
        ("get", "other", False),
        ("list", "", False),
        ("watch", "", False),
        ("create", "", False),
        ("deletecollection", "", False),
    ],
)
def test_resource_names_only_match_named_requests(verb: str, name: str, allowed: bool) -> None:
    r = rule(["*"], [""], ["pods"], names=["sandbox-1"])
    assert rule_allows(attrs(verb=verb, name=name), r) is allowed


@pytest.mark.parametrize(
    ("urls", "path", "allowed"),
    [
        (["/healthz"], "/healthz", True),
        (["/healthz"], "/healthz/ping", False),
        (["/api/*"], "/api/v1", True),
        (["/api/*"], "/api", False),
        (["/apis*"], "/apis", True),
        (["*"], "/anything", True),
    ],
)
def test_non_resource_urls(urls: list[str], path: str, allowed: bool) -> None:
    request = Attributes(user=ALICE, verb="get", resource_request=False, path=path)
    assert rule_allows(request, rule(["get"], urls=urls)) is allowed
    assert not rule_allows(request, rule(["post"], urls=urls))


def test_resource_rule_does_not_grant_non_resource_paths() -> None:
    request = Attributes(user=ALICE, verb="get", resource_request=False, path="/api")
    assert not rule_allows(request, rule(["*"], ["*"], ["*"]))


def test_missing_role_is_reported_in_the_reason() -> None:
    authz = authorizer(
        binding("dangling", "ClusterRole", "ghost", [{"kind": "User", "name": "alice"}]),
        binding("dangling-ns", "Role", "gone", [{"kind": "User", "name": "alice"}], "ns1"),
    )
    decision = authz.authorize(attrs(ALICE))
    assert decision == Decision(
        False,
        'RBAC: [clusterrole.rbac.authorization.k8s.io "ghost" not found, '
        'role.rbac.authorization.k8s.io "gone" not found]',
    )
    assert aggregate_error(["a", "a"]) == "a"


def test_no_matching_binding_denies_with_empty_reason() -> None:
    assert authorizer().authorize(attrs()) == Decision(False, "")


def test_aggregated_cluster_roles_include_labelled_roles() -> None:
    authz = authorizer(
        role("edit", [], aggregationRule={"clusterRoleSelectors": [
            {"matchLabels": {f"{RBAC}/aggregate-to-edit": "true"}}]}),
        role("extra", [rule(["create"], ["example.io"], ["widgets"])],
             meta={"labels": {f"{RBAC}/aggregate-to-edit": "true"}}),
        sa_binding("edit", "ClusterRole", "edit"),
    )
    assert authz.authorize(attrs(verb="create", api_group="example.io",
                                 resource="widgets")).allowed


def test_bootstrap_roles_match_what_aggregation_computes() -> None:
    objects = bootstrap_objects()
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRole"}
    authz = authorizer(*objects)
    for name in ("admin", "edit", "view"):
        user = User(f"u-{name}", ())
        bound = authorizer(*objects, binding(f"b-{name}", "ClusterRole", name,
                                             [{"kind": "User", "name": user.name}]))
        review = bound.rules_for(user, "")["resourceRules"]
        assert review == roles[name]["rules"]
    assert not authz.authorize(attrs(ALICE)).allowed


def test_bootstrap_policy_grants_discovery_and_self_reviews_to_service_accounts() -> None:
    authz = authorizer(*bootstrap_objects())
    ssar = attrs(verb="create", api_group="authorization.k8s.io",
                 resource="selfsubjectaccessreviews", namespace="")
    assert authz.authorize(ssar).reason == (
        'RBAC: allowed by ClusterRoleBinding "system:basic-user" of ClusterRole '
        '"system:basic-user" to Group "system:authenticated"'
    )
    api = Attributes(user=SA_USER, verb="get", resource_request=False, path="/apis/batch/v1")
    assert authz.authorize(api).allowed
    anonymous = User("system:anonymous", ("system:unauthenticated",))
    assert authz.authorize(Attributes(user=anonymous, verb="get", resource_request=False,
                                      path="/version")).allowed
    assert not authz.authorize(Attributes(user=anonymous, verb="get", resource_request=False,
                                          path="/api")).allowed
    assert not authz.authorize(attrs()).allowed


def test_edit_role_allows_exec_and_jobs_but_not_rbac() -> None:
    authz = authorizer(*bootstrap_objects(), sa_binding("edit", "ClusterRole", "edit"))
    assert authz.authorize(attrs(verb="create", subresource="exec", name="p")).allowed
    assert authz.authorize(attrs(verb="delete", api_group="batch", resource="jobs")).allowed
    assert authz.authorize(attrs(verb="impersonate", resource="serviceaccounts")).allowed
    assert not authz.authorize(attrs(verb="create", api_group=RBAC, resource="roles")).allowed


def test_rules_for_lists_resource_and_non_resource_rules() -> None:
    authz = authorizer(
        *bootstrap_objects(),
        role("pod-reader", [rule(["get"], [""], ["pods"], names=["a"])], "ns1"),
        sa_binding("read-pods", "Role", "pod-reader"),
        binding("ghost", "Role", "nope", [{"kind": "Group", "name": "system:authenticated"}],
                "ns1"),
    )
    status = authz.rules_for(SA_USER, "ns1")
    assert {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"],
            "resourceNames": ["a"]} in status["resourceRules"]
    assert {"verbs": ["create"], "apiGroups": ["authentication.k8s.io"],
            "resources": ["selfsubjectreviews"]} in status["resourceRules"]
    assert any("/api/*" in r["nonResourceURLs"] for r in status["nonResourceRules"])
    assert status["incomplete"] is False
    assert status["evaluationError"] == 'role.rbac.authorization.k8s.io "nope" not found'
    assert "resourceNames" not in authz.rules_for(SA_USER, "")["resourceRules"][0]


def test_forbidden_error_wording() -> None:
    err = forbidden_error(attrs(verb="create", subresource="exec", name="sandbox-0"))
    assert err.code == 403
    assert err.reason == "Forbidden"
    assert err.message == (
        'pods "sandbox-0" is forbidden: User "system:serviceaccount:ns1:runner" cannot create '
        'resource "pods/exec" in API group "" in the namespace "ns1"'
    )
    jobs = forbidden_error(attrs(verb="list", api_group="batch", resource="jobs", namespace=""))
    assert jobs.message == (
        'jobs.batch is forbidden: User "system:serviceaccount:ns1:runner" cannot list '
        'resource "jobs" in API group "batch" at the cluster scope'
    )
    with_reason = forbidden_error(attrs(), "RBAC: role.rbac.authorization.k8s.io \"x\" not found")
    assert with_reason.message.endswith(
        'in the namespace "ns1": RBAC: role.rbac.authorization.k8s.io "x" not found')
    path = forbidden_error(Attributes(user=ALICE, verb="get", resource_request=False,
                                      path="/metrics"))
    assert path.message == 'forbidden: User "alice" cannot get path "/metrics"'


def test_access_review_helpers() -> None:
    assert access_review_status(Decision(False, "")) == {"allowed": False}
    assert access_review_status(Decision(True, "RBAC: allowed by x")) == {
        "allowed": True, "reason": "RBAC: allowed by x"}
    spec = {"resourceAttributes": {"namespace": "ns1", "verb": "create", "resource": "pods",
                                   "subresource": "exec", "group": ""},
            "user": "bob", "groups": ["g"], "extra": {"k": ["v"]}, "uid": "1"}
    user = review_user(spec)
    assert user == User("bob", ("g",), "1", {"k": ("v",)})
    assert review_attributes(spec, user) == Attributes(
        user=user, verb="create", resource="pods", subresource="exec", namespace="ns1")
    non_resource = review_attributes({"nonResourceAttributes": {"path": "/api", "verb": "get"}},
                                     user)
    assert non_resource == Attributes(user=user, verb="get", resource_request=False, path="/api")
