"""The resource types the devcluster serves, and the discovery documents built from them.

One table drives routing, discovery (``/api``, ``/apis``, group/version resource lists),
RBAC checks and storage, so a resource added here is served consistently everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "RESOURCES", "ResourceType", "api_groups", "lookup", "lookup_kind", "require", "resource_list",
]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
READ_CREATE = ("create", "get", "list")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # authorization reviews are create-only and never stored
    ephemeral: bool = False
    singular: str = field(default="")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    @property
    def qualified(self) -> str:
        """``jobs.batch``, as error messages name a resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _r(group: str, version: str, kind: str, plural: str, **kw: Any) -> ResourceType:
    return ResourceType(group, version, kind, plural, **kw)


RESOURCES: tuple[ResourceType, ...] = (
    _r("", "v1", "Namespace", "namespaces", namespaced=False, short_names=("ns",),
       verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
       subresources=("status",)),
    _r("", "v1", "Pod", "pods", short_names=("po",), categories=("all",),
       subresources=("status", "log", "exec", "binding")),
    _r("", "v1", "Event", "events", short_names=("ev",)),
    _r("", "v1", "ServiceAccount", "serviceaccounts", short_names=("sa",),
       subresources=("token",)),
    _r("", "v1", "ConfigMap", "configmaps", short_names=("cm",)),
    _r("", "v1", "Secret", "secrets"),
    _r("", "v1", "ResourceQuota", "resourcequotas", short_names=("quota",),
       subresources=("status",)),
    _r("", "v1", "LimitRange", "limitranges", short_names=("limits",)),
    _r("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", short_names=("pvc",),
       subresources=("status",)),
    _r("", "v1", "Service", "services", short_names=("svc",), categories=("all",),
       subresources=("status",)),
    _r("", "v1", "Node", "nodes", namespaced=False, short_names=("no",),
       subresources=("status",)),
    _r("batch", "v1", "Job", "jobs", categories=("all",), subresources=("status",)),
    _r("apps", "v1", "Deployment", "deployments", short_names=("deploy",),
       categories=("all",), subresources=("status", "scale")),
    _r("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    _r("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    _r("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False),
    _r("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings",
       namespaced=False),
    _r("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", short_names=("netpol",)),
    _r("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", short_names=("pdb",),
       subresources=("status",)),
    _r("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews",
       namespaced=False, verbs=("create",), ephemeral=True),
    _r("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews",
       namespaced=False, verbs=("create",), ephemeral=True),
    _r("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews",
       namespaced=False, verbs=("create",), ephemeral=True),
    _r("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews",
       verbs=("create",), ephemeral=True),
    _r("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews",
       namespaced=False, verbs=("create",), ephemeral=True),
)

_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_KIND = {(r.group, r.kind): r for r in RESOURCES}


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    return _BY_PATH.get((group, version, plural))


def require(group: str, version: str, plural: str) -> ResourceType:
    """The registered type; for module-level constants naming a type we know is served."""
    found = lookup(group, version, plural)
    if found is None:
        raise KeyError(f"{group}/{version}/{plural} is not served")
    return found


def lookup_kind(api_version: str, kind: str) -> ResourceType | None:
    group = api_version.rpartition("/")[0]
    return _BY_KIND.get((group, kind))


def _subresource_verbs(sub: str) -> list[str]:
    return {
        "status": ["get", "patch", "update"],
        "log": ["get"],
        "exec": ["create", "get"],
        "binding": ["create"],
        "token": ["create"],
        "scale": ["get", "patch", "update"],
    }[sub]


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    """The ``APIResourceList`` for one group/version, or None if it is not served."""
    members = [r for r in RESOURCES if r.group == group and r.version == version]
    if not members:
        return None
    entries: list[dict[str, Any]] = []
    for r in members:
        entry: dict[str, Any] = {
            "name": r.plural,
            "singularName": r.singular_name,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(r.verbs),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        entries.append(entry)
        for sub in r.subresources:
            entries.append({
                "name": f"{r.plural}/{sub}",
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": {"exec": "PodExecOptions", "log": "Pod", "binding": "Binding",
                         "token": "TokenRequest", "scale": "Scale"}.get(sub, r.kind),
                "verbs": _subresource_verbs(sub),
            })
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": entries,
    }


def api_groups() -> dict[str, Any]:
    """The ``APIGroupList`` served at ``/apis`` (the core group lives at ``/api``)."""
    groups: dict[str, list[str]] = {}
    for r in RESOURCES:
        if r.group:
            groups.setdefault(r.group, [])
            if r.version not in groups[r.group]:
                groups[r.group].append(r.version)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": name,
                "versions": [{"groupVersion": f"{name}/{v}", "version": v} for v in versions],
                "preferredVersion": {"groupVersion": f"{name}/{versions[0]}",
                                     "version": versions[0]},
            }
            for name, versions in groups.items()
        ],
    }
