"""Namespace upkeep: the ``default`` ServiceAccount, the root CA ConfigMap, and deletion.

Three kube-controller-manager controllers in one, because all three are keyed by namespace:
the serviceaccount controller (re)creates ``default`` in every active namespace, the
root-ca-cert-publisher keeps ``kube-root-ca.crt`` (when the cluster gives it a CA), and the
namespace controller empties a namespace being deleted -- reporting progress in the same
status conditions -- before removing the ``kubernetes`` finalizer that holds it.
"""

from __future__ import annotations

from typing import Any

from .. import clock
from ..api import Api
from ..errors import ApiError
from ..resources import RESOURCES, ResourceType, require
from .base import Controller, controller_user

__all__ = ["NAMESPACE_FINALIZER", "NamespaceController"]

NAMESPACES = require("", "v1", "namespaces")
SERVICE_ACCOUNTS = require("", "v1", "serviceaccounts")
CONFIG_MAPS = require("", "v1", "configmaps")
NAMESPACE_FINALIZER = "kubernetes"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
ROOT_CA_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
    "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
    "guaranteed across distributions of Kubernetes clusters."
)
USER = controller_user("namespace-controller")


def _condition(type_: str, status: str, reason: str, message: str, now: str) -> dict[str, Any]:
    return {"type": type_, "status": status, "lastTransitionTime": now, "reason": reason,
            "message": message}


def _deletion_conditions(
    remaining: dict[str, int], finalizers: dict[str, int], now: str
) -> list[dict[str, Any]]:
    """The conditions the namespace controller reports while it empties a namespace."""
    conditions = [
        _condition("NamespaceDeletionDiscoveryFailure", "False", "ResourcesDiscovered",
                   "All resources successfully discovered", now),
        _condition("NamespaceDeletionGroupVersionParsingFailure", "False", "ParsedGroupVersions",
                   "All legacy kube types successfully parsed", now),
        _condition("NamespaceDeletionContentFailure", "False", "ContentDeleted",
                   "All content successfully deleted, may be waiting on finalization", now),
    ]
    if remaining:
        listed = ", ".join(f"{res} has {n} resource instances"
                           for res, n in sorted(remaining.items()))
        conditions.append(_condition("NamespaceContentRemaining", "True", "SomeResourcesRemain",
                                     f"Some resources are remaining: {listed}", now))
    else:
        conditions.append(_condition("NamespaceContentRemaining", "False", "ContentRemoved",
                                     "All content successfully removed", now))
    if finalizers:
        listed = ", ".join(f"{fin} in {n} resource instances"
                           for fin, n in sorted(finalizers.items()))
        conditions.append(_condition(
            "NamespaceFinalizersRemaining", "True", "SomeFinalizersRemain",
            f"Some content in the namespace has finalizers remaining: {listed}", now))
    else:
        conditions.append(_condition("NamespaceFinalizersRemaining", "False",
                                     "ContentHasNoFinalizers",
                                     "All content-preserving finalizers finished", now))
    return conditions


def _same_conditions(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> bool:
    def strip(conds: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(c.get("type"), c.get("status"), c.get("reason"), c.get("message")) for c in conds]

    return strip(old) == strip(new)


class NamespaceController(Controller):
    """Keeps each namespace's defaults in place and carries out namespace deletion."""

    name = "namespace-controller"

    def __init__(self, api: Api, *, root_ca_pem: str | None = None) -> None:
        super().__init__(api)
        self.root_ca_pem = root_ca_pem
        self._terminating: set[str] = set()

    def observe(self, event_type: str, rt: ResourceType, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        if rt is NAMESPACES:
            if event_type == "DELETED":
                self._terminating.discard(meta["name"])
            else:
                self.queue.add(meta["name"])
            return
        namespace = meta.get("namespace", "")
        if not rt.namespaced or not namespace:
            return
        replaced = event_type == "DELETED" and (
            (rt is SERVICE_ACCOUNTS and meta["name"] == "default")
            or (rt is CONFIG_MAPS and meta["name"] == ROOT_CA_CONFIGMAP)
        )
        if namespace in self._terminating or replaced:
            self.queue.add(namespace)

    def resync(self) -> None:
        for ns in self.api.list(NAMESPACES)[0]:
            self.queue.add(ns["metadata"]["name"])

    def reconcile(self, key: Any) -> None:
        namespace = self.api.get_or_none(NAMESPACES, None, key)
        if namespace is None:
            self._terminating.discard(key)
            return
        if "deletionTimestamp" in namespace["metadata"]:
            self._terminating.add(key)
            self._delete_content(namespace)
            return
        self._ensure(SERVICE_ACCOUNTS, {"metadata": {"name": "default", "namespace": key}})
        if self.root_ca_pem is not None:
            self._ensure(CONFIG_MAPS, {
                "metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": key,
                             "annotations": {"kubernetes.io/description": ROOT_CA_DESCRIPTION}},
                "data": {"ca.crt": self.root_ca_pem},
            })

    def _ensure(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        if self.api.get_or_none(rt, meta["namespace"], meta["name"]) is not None:
            return
        try:
            self.api.create(rt, {"apiVersion": rt.api_version, "kind": rt.kind, **obj}, user=USER)
        except ApiError as exc:
            # already there, or the namespace started terminating meanwhile
            if exc.code not in (403, 404, 409):
                raise

    def _delete_content(self, namespace: dict[str, Any]) -> None:
        name = namespace["metadata"]["name"]
        remaining: dict[str, int] = {}
        finalizers: dict[str, int] = {}
        for rt in RESOURCES:
            if not rt.namespaced or rt.ephemeral:
                continue
            items = self.api.list(rt, name)[0]
            for obj in items:
                for fin in obj["metadata"].get("finalizers") or []:
                    finalizers[fin] = finalizers.get(fin, 0) + 1
                if "deletionTimestamp" not in obj["metadata"]:
                    try:
                        self.api.delete(rt, name, obj["metadata"]["name"])
                    except ApiError as exc:
                        if exc.code != 404:
                            raise
            left = len(self.api.list(rt, name)[0])
            if left:
                remaining[f"{rt.plural}.{rt.group}"] = left
        status = namespace.setdefault("status", {})
        conditions = _deletion_conditions(remaining, finalizers, clock.rfc3339())
        if status.get("phase") != "Terminating" or not _same_conditions(
            status.get("conditions") or [], conditions
        ):
            status["phase"] = "Terminating"
            status["conditions"] = conditions
            namespace = self.api.update(NAMESPACES, namespace, subresource="status", user=USER)
        if remaining:
            return  # each departure of the remaining content queues this namespace again
        spec_finalizers = namespace.get("spec", {}).get("finalizers") or []
        if NAMESPACE_FINALIZER in spec_finalizers:
            namespace["spec"]["finalizers"] = [
                f for f in spec_finalizers if f != NAMESPACE_FINALIZER]
            self.api.update(NAMESPACES, namespace, user=USER)
