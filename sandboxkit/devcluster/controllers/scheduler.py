"""A one-node ``default-scheduler``: binds pending pods to the devcluster's node.

VolumeBinding's PreFilter comes first (a pod whose PersistentVolumeClaim is missing waits,
retried when claims appear) and its PreBind provisions and binds the pod's claims.
It runs the filters that matter on a single node -- NodeUnschedulable, TaintToleration,
NodeAffinity (nodeSelector and required node affinity) and NodeResourcesFit -- in upstream's
order, stopping at the first that rejects, and words the outcome as kube-scheduler 1.32
does (``0/1 nodes are available: 1 Insufficient cpu. preemption: ...``) in the PodScheduled
condition and the FailedScheduling event. Unschedulable pods are retried when pods leave
the node or the node changes, and every five minutes as upstream flushes its unschedulable
queue.
"""

from __future__ import annotations

import asyncio
import platform
import socket
import uuid
from decimal import Decimal
from typing import Any

from .. import clock
from ..api import Api, pod_scheduled_condition
from ..quantity import parse_quantity
from ..resources import ResourceType, require
from ..volumes import CLAIMS, bind_claims, claim_problem
from .base import Controller, controller_user

__all__ = ["COMPONENT", "NodeOptions", "Scheduler", "ensure_node", "fit_error_message",
           "pod_requests"]

PODS = require("", "v1", "pods")
NODES = require("", "v1", "nodes")
COMPONENT = "default-scheduler"
USER = controller_user("kube-scheduler")
TERMINAL_PHASES = ("Succeeded", "Failed")
UNSCHEDULABLE_FLUSH_SECONDS = 300.0
KUBELET_VERSION = "v1.32.0"

AFFINITY_REASON = "node(s) didn't match Pod's node affinity/selector"
UNSCHEDULABLE_REASON = "node(s) were unschedulable"
TOO_MANY_PODS = "Too many pods"
NO_VICTIMS = "No preemption victims found for incoming pod"
NOT_HELPFUL = "Preemption is not helpful for scheduling"


class NodeOptions:
    """The node the devcluster advertises: name and capacity (allocatable is the same)."""

    def __init__(
        self, name: str = "devcluster-node", cpu: str = "4", memory: str = "8Gi",
        pods: str = "110", ephemeral_storage: str = "100Gi",
    ) -> None:
        self.name = name
        self.capacity = {"cpu": cpu, "ephemeral-storage": ephemeral_storage,
                         "hugepages-1Gi": "0", "hugepages-2Mi": "0", "memory": memory,
                         "pods": pods}


def _node_condition(type_: str, status: str, reason: str, message: str, now: str) -> dict[str, Any]:
    return {"type": type_, "status": status, "lastHeartbeatTime": now,
            "lastTransitionTime": now, "reason": reason, "message": message}


def ensure_node(api: Api, options: NodeOptions) -> dict[str, Any]:
    """Create the Node object if missing (a kubelet registers its node the same way)."""
    node = api.get_or_none(NODES, None, options.name)
    if node is not None:
        return node
    now = clock.rfc3339()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    labels = {
        "beta.kubernetes.io/arch": arch, "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch, "kubernetes.io/hostname": options.name,
        "kubernetes.io/os": "linux",
    }
    node = {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": options.name, "labels": labels,
                     "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {},
        "status": {
            "capacity": dict(options.capacity),
            "allocatable": dict(options.capacity),
            "conditions": [
                _node_condition("MemoryPressure", "False", "KubeletHasSufficientMemory",
                                "kubelet has sufficient memory available", now),
                _node_condition("DiskPressure", "False", "KubeletHasNoDiskPressure",
                                "kubelet has no disk pressure", now),
                _node_condition("PIDPressure", "False", "KubeletHasSufficientPID",
                                "kubelet has sufficient PID available", now),
                _node_condition("Ready", "True", "KubeletReady",
                                "kubelet is posting ready status", now),
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                          {"type": "Hostname", "address": socket.gethostname()}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": arch, "bootID": str(uuid.uuid4()),
                "containerRuntimeVersion": "devcluster://1.0",
                "kernelVersion": platform.release(), "kubeProxyVersion": KUBELET_VERSION,
                "kubeletVersion": KUBELET_VERSION, "machineID": uuid.uuid4().hex,
                "operatingSystem": "linux", "osImage": "devcluster",
                "systemUUID": str(uuid.uuid4()),
            },
        },
    }
    created = api.create(NODES, node)
    if created.get("status") != node["status"]:
        created["status"] = node["status"]
        created = api.update(NODES, created, subresource="status")
    return created


def _add(total: dict[str, Decimal], resources: dict[str, Any]) -> None:
    for name, value in resources.items():
        total[name] = total.get(name, Decimal(0)) + parse_quantity(str(value))


def pod_requests(pod: dict[str, Any]) -> dict[str, Decimal]:
    """Effective requests: max(sum of containers, largest init container) plus overhead."""
    spec = pod.get("spec", {})
    total: dict[str, Decimal] = {}
    for container in spec.get("containers") or []:
        _add(total, (container.get("resources") or {}).get("requests") or {})
    for container in spec.get("initContainers") or []:
        for name, value in ((container.get("resources") or {}).get("requests") or {}).items():
            amount = parse_quantity(str(value))
            if amount > total.get(name, Decimal(0)):
                total[name] = amount
    _add(total, spec.get("overhead") or {})
    return total


def _tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    for tol in tolerations:
        if tol.get("effect") and tol["effect"] != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists":
            if not tol.get("key") or tol["key"] == taint.get("key"):
                return True
        elif tol.get("key") == taint.get("key") and tol.get("value", "") == taint.get("value", ""):
            return True
    return False


def _expression_matches(expr: dict[str, Any], labels: dict[str, str]) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator"), expr.get("values") or []
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt") and key in labels and values:
        try:
            have, want = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def _affinity_matches(pod: dict[str, Any], node: dict[str, Any]) -> bool:
    labels = node["metadata"].get("labels") or {}
    spec = pod.get("spec", {})
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if not required:
        return True
    for term in required.get("nodeSelectorTerms") or []:
        fields = {"metadata.name": node["metadata"]["name"]}
        if all(_expression_matches(e, labels) for e in term.get("matchExpressions") or []) and all(
            _expression_matches(e, fields) for e in term.get("matchFields") or []
        ):
            return True
    return False


def filter_node(
    pod: dict[str, Any], node: dict[str, Any], node_pods: list[dict[str, Any]]
) -> tuple[list[str], bool]:
    """Reasons the node does not fit the pod, and whether preemption could ever help."""
    tolerations = pod.get("spec", {}).get("tolerations") or []
    node_spec = node.get("spec", {})
    if node_spec.get("unschedulable") and not _tolerates(
        tolerations, {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
    ):
        return [UNSCHEDULABLE_REASON], False
    for taint in node_spec.get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(
            tolerations, taint
        ):
            shown = f"{taint.get('key')}: {taint['value']}" if taint.get("value") else taint.get(
                "key")
            return [f"node(s) had untolerated taint {{{shown}}}"], False
    if not _affinity_matches(pod, node):
        return [AFFINITY_REASON], False
    allocatable = {k: parse_quantity(str(v))
                   for k, v in (node.get("status", {}).get("allocatable") or {}).items()}
    used: dict[str, Decimal] = {}
    for other in node_pods:
        for name, amount in pod_requests(other).items():
            used[name] = used.get(name, Decimal(0)) + amount
    reasons = []
    if len(node_pods) + 1 > allocatable.get("pods", Decimal(0)):
        reasons.append(TOO_MANY_PODS)
    for name, amount in sorted(pod_requests(pod).items()):
        if amount > 0 and amount > allocatable.get(name, Decimal(0)) - used.get(name, Decimal(0)):
            reasons.append(f"Insufficient {name}")
    return reasons, True


def fit_error_message(total_nodes: int, reasons: dict[str, int], victims_possible: bool,
                      pre_filter: str = "") -> str:
    """``FitError.Error()`` plus the preemption post-filter message of a failed attempt.

    A PreFilter rejection (``pre_filter``) replaces the per-node histogram and leaves
    preemption nothing to try.
    """
    histogram = pre_filter or ", ".join(
        sorted(f"{count} {reason}" for reason, count in reasons.items()))
    preemption = NO_VICTIMS if victims_possible and not pre_filter else NOT_HELPFUL
    return (f"0/{total_nodes} nodes are available: {histogram}. "
            f"preemption: 0/{total_nodes} nodes are available: {total_nodes} {preemption}.")


def _wants_scheduling(pod: dict[str, Any]) -> bool:
    spec = pod.get("spec", {})
    return (
        not spec.get("nodeName")
        and spec.get("schedulerName", COMPONENT) == COMPONENT
        and "deletionTimestamp" not in pod["metadata"]
        and pod.get("status", {}).get("phase") not in TERMINAL_PHASES
    )


class Scheduler(Controller):
    """Binds pods to the one node, or reports why it cannot."""

    name = COMPONENT

    def __init__(self, api: Api, node: NodeOptions | None = None) -> None:
        super().__init__(api)
        self.node = node or NodeOptions()
        self._unschedulable: set[tuple[str, str]] = set()
        self._flush_timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        ensure_node(self.api, self.node)
        super().start()
        self._arm_flush()

    async def stop(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        await super().stop()

    def _arm_flush(self) -> None:
        loop = asyncio.get_running_loop()
        self._flush_timer = loop.call_later(UNSCHEDULABLE_FLUSH_SECONDS, self._flush)

    def _flush(self) -> None:
        self._retry_unschedulable()
        self._arm_flush()

    def _retry_unschedulable(self) -> None:
        for key in sorted(self._unschedulable):
            self.queue.add(key)

    def observe(self, event_type: str, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt is NODES or (rt is CLAIMS and event_type == "ADDED"):
            self._retry_unschedulable()
            return
        if rt is not PODS:
            return
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if event_type == "DELETED":
            self._unschedulable.discard(key)
            if obj.get("spec", {}).get("nodeName"):
                self._retry_unschedulable()
        elif _wants_scheduling(obj):
            if key not in self._unschedulable or event_type == "ADDED":
                self.queue.add(key)
        elif obj.get("status", {}).get("phase") in TERMINAL_PHASES:
            self._unschedulable.discard(key)
            if obj.get("spec", {}).get("nodeName"):
                self._retry_unschedulable()

    def resync(self) -> None:
        for pod in self.api.list(PODS)[0]:
            if _wants_scheduling(pod):
                self.queue.add((pod["metadata"]["namespace"], pod["metadata"]["name"]))

    def reconcile(self, key: Any) -> None:
        namespace, name = key
        pod = self.api.get_or_none(PODS, namespace, name)
        if pod is None:
            self._unschedulable.discard(key)
            return
        if not _wants_scheduling(pod):
            self._unschedulable.discard(key)
            return
        claim_trouble = claim_problem(self.api, pod)
        if claim_trouble is not None:
            self._unschedulable.add(key)
            self._report_unschedulable(pod, fit_error_message(1, {}, False, claim_trouble))
            return
        node = self.api.get(NODES, None, self.node.name)
        node_pods = [
            p for p in self.api.list(PODS)[0]
            if p.get("spec", {}).get("nodeName") == self.node.name
            and p.get("status", {}).get("phase") not in TERMINAL_PHASES
        ]
        reasons, preemptable = filter_node(pod, node, node_pods)
        if reasons:
            self._unschedulable.add(key)
            self._report_unschedulable(
                pod, fit_error_message(1, {r: 1 for r in reasons}, preemptable))
            return
        self._unschedulable.discard(key)
        bind_claims(self.api, pod, node["metadata"]["name"], USER)
        self._bind(pod, node["metadata"]["name"])

    def _report_unschedulable(self, pod: dict[str, Any], message: str) -> None:
        self._set_condition(pod, pod_scheduled_condition("False", "Unschedulable", message))
        self.api.record_event(pod, "Warning", "FailedScheduling", message, COMPONENT)

    def _bind(self, pod: dict[str, Any], node_name: str) -> None:
        """Bind through ``pods/binding``, which also marks the pod scheduled."""
        meta = pod["metadata"]
        bound = self.api.bind(meta["namespace"], meta["name"], node_name,
                              uid=meta.get("uid"))
        self.api.record_event(
            bound, "Normal", "Scheduled",
            f"Successfully assigned {meta['namespace']}/{meta['name']} to {node_name}", COMPONENT)

    def _set_condition(self, pod: dict[str, Any], condition: dict[str, Any]) -> None:
        status = pod.setdefault("status", {})
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        old = next((c for c in status.get("conditions") or []
                    if c.get("type") == "PodScheduled"), None)
        if old is not None and (old.get("status"), old.get("reason"), old.get("message")) == (
            condition["status"], condition.get("reason"), condition.get("message")
        ):
            return
        status["conditions"] = [condition, *conditions]
        self.api.update(PODS, pod, subresource="status", user=USER)
