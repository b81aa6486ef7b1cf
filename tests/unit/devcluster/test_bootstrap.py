"""The default RBAC objects of a fresh cluster."""

from __future__ import annotations

from sandboxkit.devcluster.bootstrap import bootstrap_objects


def _by_kind(kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in bootstrap_objects() if o["kind"] == kind}


def test_cluster_roles_present_with_bootstrap_metadata() -> None:
    roles = _by_kind("ClusterRole")
    assert {"cluster-admin", "admin", "edit", "view", "system:discovery", "system:basic-user",
            "system:public-info-viewer"} <= set(roles)
    for role in roles.values():
        assert role["apiVersion"] == "rbac.authorization.k8s.io/v1"
        assert role["metadata"]["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults"
        assert role["metadata"]["annotations"] == {
            "rbac.authorization.kubernetes.io/autoupdate": "true"}
    assert roles["cluster-admin"]["rules"] == [
        {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
        {"verbs": ["*"], "nonResourceURLs": ["*"]},
    ]
    assert roles["edit"]["aggregationRule"] == {"clusterRoleSelectors": [
        {"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}}]}
    assert roles["view"]["metadata"]["labels"][
        "rbac.authorization.k8s.io/aggregate-to-edit"] == "true"


def test_cluster_role_bindings_match_kubernetes_subjects() -> None:
    subjects = {name: [(s["kind"], s["name"]) for s in b["subjects"]]
                for name, b in _by_kind("ClusterRoleBinding").items()}
    assert subjects == {
        "cluster-admin": [("Group", "system:masters")],
        "system:basic-user": [("Group", "system:authenticated")],
        "system:discovery": [("Group", "system:authenticated")],
        "system:public-info-viewer": [("Group", "system:authenticated"),
                                      ("Group", "system:unauthenticated")],
    }
    roles = _by_kind("ClusterRole")
    for binding in _by_kind("ClusterRoleBinding").values():
        assert binding["roleRef"]["name"] in roles


def test_each_call_returns_independent_objects() -> None:
    first = bootstrap_objects()
    first[1]["rules"][0]["verbs"].append("mutated")
    assert "mutated" not in str(bootstrap_objects())
