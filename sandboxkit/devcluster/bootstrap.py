"""The RBAC objects a fresh cluster starts with.

They mirror kube-apiserver's bootstrap policy for the roles sandboxkit's users meet:
``cluster-admin`` bound to ``system:masters``; the user-facing ``admin``, ``edit`` and
``view`` roles built by aggregation; and the discovery, basic-user and public-info roles
every authenticated caller holds, so a ServiceAccount with no bindings of its own can still
run discovery and ``kubectl auth can-i``. Rule sets cover the resources the devcluster
serves plus the common ones a manifest written for a real cluster mentions.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["bootstrap_objects"]

_RBAC = "rbac.authorization.k8s.io"
_RBAC_V1 = f"{_RBAC}/v1"
_BOOTSTRAP_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
_AUTOUPDATE = {"rbac.authorization.kubernetes.io/autoupdate": "true"}

_READ = ["get", "list", "watch"]
_WRITE = ["create", "delete", "deletecollection", "patch", "update"]
_ALL = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"verbs": verbs, "apiGroups": groups, "resources": resources}


def _urls(urls: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"verbs": verbs, "nonResourceURLs": urls}


def _aggregate_label(target: str) -> dict[str, str]:
    return {f"{_RBAC}/aggregate-to-{target}": "true"}


def _cluster_role(
    name: str,
    rules: list[dict[str, Any]],
    labels: dict[str, str] | None = None,
    aggregate_from: str | None = None,
) -> dict[str, Any]:
    role: dict[str, Any] = {
        "apiVersion": _RBAC_V1,
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": {**_BOOTSTRAP_LABELS, **(labels or {})},
            "annotations": dict(_AUTOUPDATE),
        },
        "rules": rules,
    }
    if aggregate_from:
        role["aggregationRule"] = {
            "clusterRoleSelectors": [{"matchLabels": _aggregate_label(aggregate_from)}],
        }
    return role


def _binding(name: str, role: str, groups: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": _RBAC_V1,
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": name,
            "labels": dict(_BOOTSTRAP_LABELS),
            "annotations": dict(_AUTOUPDATE),
        },
        "roleRef": {"apiGroup": _RBAC, "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": _RBAC, "kind": "Group", "name": g} for g in groups],
    }


def _view_rules() -> list[dict[str, Any]]:
    return [
        _rule([""], ["configmaps", "endpoints", "persistentvolumeclaims",
                     "persistentvolumeclaims/status", "pods", "replicationcontrollers",
                     "replicationcontrollers/scale", "serviceaccounts", "services",
                     "services/status"], _READ),
        _rule([""], ["bindings", "events", "limitranges", "namespaces/status", "pods/log",
                     "pods/status", "replicationcontrollers/status", "resourcequotas",
                     "resourcequotas/status"], _READ),
        _rule([""], ["namespaces"], _READ),
        _rule(["discovery.k8s.io"], ["endpointslices"], _READ),
        _rule(["apps"], ["controllerrevisions", "daemonsets", "daemonsets/status",
                         "deployments", "deployments/scale", "deployments/status",
                         "replicasets", "replicasets/scale", "replicasets/status",
                         "statefulsets", "statefulsets/scale", "statefulsets/status"], _READ),
        _rule(["autoscaling"], ["horizontalpodautoscalers",
                                "horizontalpodautoscalers/status"], _READ),
        _rule(["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"], _READ),
        _rule(["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"], _READ),
        _rule(["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"],
              _READ),
    ]


def _edit_rules() -> list[dict[str, Any]]:
    pod_access = ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]
    return [
        _rule([""], [*pod_access, "secrets", "services/proxy"], _READ),
        _rule([""], ["serviceaccounts"], ["impersonate"]),
        _rule([""], ["pods", *pod_access], _WRITE),
        _rule([""], ["pods/eviction"], ["create"]),
        _rule([""], ["configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
                     "replicationcontrollers/scale", "secrets", "serviceaccounts", "services",
                     "services/proxy"], _WRITE),
        _rule([""], ["serviceaccounts/token"], ["create"]),
        _rule(["apps"], ["daemonsets", "deployments", "deployments/rollback",
                         "deployments/scale", "replicasets", "replicasets/scale",
                         "statefulsets", "statefulsets/scale"], _WRITE),
        _rule(["autoscaling"], ["horizontalpodautoscalers"], _WRITE),
        _rule(["batch"], ["cronjobs", "jobs"], _WRITE),
        _rule(["policy"], ["poddisruptionbudgets"], _WRITE),
        _rule(["networking.k8s.io"], ["ingresses", "networkpolicies"], _WRITE),
        _rule(["coordination.k8s.io"], ["leases"], _ALL),
    ]


def _admin_rules() -> list[dict[str, Any]]:
    return [
        _rule(["authorization.k8s.io"], ["localsubjectaccessreviews"], ["create"]),
        _rule([_RBAC], ["rolebindings", "roles"], _ALL),
    ]


def _cluster_roles() -> list[dict[str, Any]]:
    view, edit, admin = _view_rules(), _edit_rules(), _admin_rules()
    # admin/edit/view carry the rules aggregation yields (roles unioned in name order),
    # so `kubectl get clusterrole edit -o yaml` shows what a live cluster shows.
    return [
        _cluster_role("cluster-admin", [_rule(["*"], ["*"], ["*"]), _urls(["*"], ["*"])]),
        _cluster_role("admin", [*edit, *view, *admin], aggregate_from="admin"),
        _cluster_role("edit", [*edit, *view], _aggregate_label("admin"), aggregate_from="edit"),
        _cluster_role("view", list(view), _aggregate_label("edit"), aggregate_from="view"),
        _cluster_role("system:aggregate-to-admin", admin, _aggregate_label("admin")),
        _cluster_role("system:aggregate-to-edit", edit, _aggregate_label("edit")),
        _cluster_role("system:aggregate-to-view", view, _aggregate_label("view")),
        _cluster_role("system:discovery", [_urls(
            ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
             "/openapi/*", "/readyz", "/version", "/version/"], ["get"])]),
        _cluster_role("system:basic-user", [
            _rule(["authorization.k8s.io"],
                  ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], ["create"]),
            _rule(["authentication.k8s.io"], ["selfsubjectreviews"], ["create"]),
        ]),
        _cluster_role("system:public-info-viewer", [_urls(
            ["/healthz", "/livez", "/readyz", "/version", "/version/"], ["get"])]),
    ]


def _cluster_role_bindings() -> list[dict[str, Any]]:
    return [
        _binding("cluster-admin", "cluster-admin", ["system:masters"]),
        _binding("system:basic-user", "system:basic-user", ["system:authenticated"]),
        _binding("system:discovery", "system:discovery", ["system:authenticated"]),
        _binding("system:public-info-viewer", "system:public-info-viewer",
                 ["system:authenticated", "system:unauthenticated"]),
    ]


def bootstrap_objects() -> list[dict[str, Any]]:
    """ClusterRoles then ClusterRoleBindings, ready for ``Api.create``.

    Deep-copied because roles share rule lists, and a caller may mutate what it stores.
    """
    return copy.deepcopy([*_cluster_roles(), *_cluster_role_bindings()])
