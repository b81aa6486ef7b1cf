"""Pod status generation: the API ``PodStatus`` computed from what a pod worker knows.

The pod worker keeps a :class:`PodState` (one :class:`ContainerRecord` per container, across
restarts); :func:`api_pod_status` turns it into ``status`` the way the kubelet's
``generateAPIPodStatus`` and status manager do: the phase (``getPhase``), the
PodReadyToStartContainers, Initialized, Ready and ContainersReady conditions with their
reasons and messages (``lastTransitionTime`` moves only when a condition's status does),
container statuses, host and pod IPs and the QoS class. sandboxkit's diagnostics, widgets
and the troubleshooting notebook read exactly these, so their wording is the kubelet's.

Without probes a running container is ready and started; every pod shares the host
network, so ``podIP`` is the node's address once the (notional) sandbox is ready.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import clock
from .images import ImageTable, normalize
from .qos import qos_class
from .runtime import Container

__all__ = [
    "ContainerRecord",
    "PodState",
    "api_pod_status",
    "bracketed",
    "pod_conditions",
    "pod_phase",
]


def bracketed(names: list[str]) -> str:
    """A list of names as Go's ``%v`` prints a ``[]string``: ``[a b]``."""
    return "[" + " ".join(names) + "]"


@dataclass
class ContainerRecord:
    """What the kubelet knows of one container of a pod across its restarts."""

    spec: dict[str, Any]
    init: bool = False
    state: dict[str, Any] = field(
        default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}}
    )
    last_state: dict[str, Any] = field(default_factory=dict)
    runs: int = 0
    container: Container | None = None
    container_id: str = ""
    image_backoff: float = 0.0
    image_retry_at: float = 0.0
    crash_backoff: float = 0.0
    log_path: Path | None = None
    previous_log_path: Path | None = None

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def running(self) -> bool:
        return "running" in self.state

    def status(self) -> dict[str, Any]:
        """The container's entry in ``containerStatuses`` (or ``initContainerStatuses``)."""
        image = self.spec.get("image", "")
        with contextlib.suppress(ValueError):
            if self.container_id:
                image = normalize(image)
        entry: dict[str, Any] = {
            "name": self.name,
            "state": self.state,
            "lastState": self.last_state,
            "ready": self.running,
            "restartCount": max(self.runs - 1, 0),
            "image": image,
            "imageID": ImageTable.image_id(image) if self.container_id else "",
            "started": self.running,
        }
        if self.container_id:
            entry["containerID"] = self.container_id
        return entry


@dataclass
class PodState:
    """A pod as its worker sees it: the pod last read, its containers and its verdict.

    ``phase`` follows :func:`pod_phase` until ``terminal``; from then on it is final (a
    deadline or deletion may set it, with ``reason`` and ``message``).
    """

    uid: str
    namespace: str
    name: str
    pod: dict[str, Any]
    records: dict[str, ContainerRecord] = field(default_factory=dict)
    start_time: str | None = None
    sandbox_ready: bool = False
    phase: str = "Pending"
    reason: str | None = None
    message: str | None = None
    terminal: bool = False


def pod_phase(state: PodState) -> str:
    """The phase the containers' states and the restart policy give (``getPhase``)."""
    records = list(state.records.values())
    inits = [r for r in records if r.init]
    if any(r.state.get("terminated", {}).get("exitCode", 0) != 0
           for r in inits) and state.pod["spec"].get("restartPolicy") == "Never":
        return "Failed"
    if any("terminated" not in r.state or r.state["terminated"]["exitCode"] != 0
           for r in inits):
        return "Pending"
    waiting = running = stopped = succeeded = 0
    for r in records:
        if r.init:
            continue
        if "running" in r.state:
            running += 1
        elif "terminated" in r.state:
            stopped += 1
            succeeded += r.state["terminated"]["exitCode"] == 0
        elif r.last_state.get("terminated"):
            stopped += 1
        else:
            waiting += 1
    policy = state.pod["spec"].get("restartPolicy", "Always")
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if policy == "Always" or (policy == "OnFailure" and stopped != succeeded):
        return "Running"
    return "Succeeded" if stopped == succeeded else "Failed"


def pod_conditions(state: PodState, old: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The kubelet's conditions, keeping ``old``'s transition times where nothing moved."""
    previous = {c.get("type"): c for c in old}
    now = clock.rfc3339()

    def cond(type_: str, ok: bool, reason: str | None = None,
             message: str | None = None) -> dict[str, Any]:
        status = "True" if ok else "False"
        before = previous.get(type_)
        entry: dict[str, Any] = {"type": type_, "status": status, "lastProbeTime": None}
        moved = before is None or before.get("status") != status
        entry["lastTransitionTime"] = now if moved else before.get("lastTransitionTime", now)
        if not ok and reason:
            entry["reason"] = reason
            if message:
                entry["message"] = message
        return entry

    records = list(state.records.values())
    pending_init = [r.name for r in records if r.init and not (
        "terminated" in r.state and r.state["terminated"]["exitCode"] == 0)]
    unready = [r.name for r in records if not r.init and not r.running]
    if state.terminal:
        ready_reason, ready_message = "PodCompleted", None
    else:
        ready_reason = "ContainersNotReady"
        ready_message = f"containers with unready status: {bracketed(unready)}"
    conditions = [
        cond("PodReadyToStartContainers", state.sandbox_ready and not state.terminal),
        cond("Initialized", not pending_init, "ContainersNotInitialized",
             f"containers with incomplete status: {bracketed(pending_init)}"),
        cond("Ready", not unready and not state.terminal, ready_reason,
             None if state.terminal else f"containers with unready status: "
             f"{bracketed(unready)}"),
        cond("ContainersReady", not unready and not state.terminal, ready_reason,
             ready_message),
    ]
    scheduled = previous.get("PodScheduled") or cond("PodScheduled", True)
    return [*conditions, scheduled]


def api_pod_status(state: PodState, pod: Mapping[str, Any], host_ip: str) -> dict[str, Any]:
    """``pod``'s new ``status`` from ``state`` (whose ``phase`` the caller brought up to date).

    What the kubelet does not set is kept from the pod's current status, and so are a
    first ``startTime`` and the scheduler's PodScheduled condition.
    """
    status = dict(pod.get("status") or {})
    status["phase"] = state.phase
    status["conditions"] = pod_conditions(state, status.get("conditions") or [])
    status["hostIP"] = host_ip
    status["hostIPs"] = [{"ip": host_ip}]
    if state.sandbox_ready:
        status["podIP"] = host_ip
        status["podIPs"] = [{"ip": host_ip}]
    status["startTime"] = status.get("startTime") or state.start_time
    inits = [r.status() for r in state.records.values() if r.init]
    if inits:
        status["initContainerStatuses"] = inits
    status["containerStatuses"] = [r.status() for r in state.records.values() if not r.init]
    status["qosClass"] = qos_class(pod)
    for key, value in (("reason", state.reason), ("message", state.message)):
        if value:
            status[key] = value
    return status
