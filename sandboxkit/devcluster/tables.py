"""Server-side printing: the ``meta.k8s.io/v1`` Table kubectl asks for with ``as=Table``.

kubectl renders whatever columns the server sends, so these column sets are what
``kubectl get`` shows; they follow the API server's printers (``pkg/printers/internalversion``)
for the kinds people look at. Like the API server, every row carries the wide cells too:
columns with ``priority`` 1 are the ones kubectl shows only with ``-o wide``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from . import clock
from .resources import ResourceType

__all__ = ["human_age", "to_table", "wants_table"]

Obj = dict[str, Any]


class Column(NamedTuple):
    name: str
    type: str
    format: str
    value: Callable[[Obj], Any]
    priority: int = 0


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def human_age(timestamp: str | None, now: datetime | None = None) -> str:
    """Durations as the API server's ``duration.HumanDuration`` prints them: 45s, 5m10s, 3h5m,
    2d4h, 1y30d."""
    if not timestamp:
        return "<unknown>"
    seconds = int(((now or datetime.now(UTC)) - clock.parse_time(timestamp)).total_seconds())
    if seconds < -1:
        return "<invalid>"
    seconds = max(seconds, 0)
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    years, rest = divmod(days, 365)
    if hours < 24 * 365 * 8 and rest:
        return f"{years}y{rest}d"
    return f"{years}y"


def _age(obj: Obj) -> str:
    return human_age(obj["metadata"].get("creationTimestamp"))


def _status(obj: Obj) -> Obj:
    return obj.get("status") or {}


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


# -- pods ---------------------------------------------------------------------------------


def _pod_cells(pod: Obj) -> tuple[str, str, str]:
    """(ready, status, restarts) as ``printPod`` computes them for regular containers."""
    status = _status(pod)
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    restarts, ready, running = 0, 0, False
    last_restart = ""
    # The printer walks container statuses from the last to the first, so the first
    # container's state wins the Status column.
    for cs in reversed(status.get("containerStatuses") or []):
        restarts += int(cs.get("restartCount") or 0)
        finished = ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        if finished and finished > last_restart:
            last_restart = finished
        state = cs.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        if waiting is not None and waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated is not None and terminated.get("reason"):
            reason = terminated["reason"]
        elif terminated is not None:
            reason = (f"Signal:{terminated['signal']}" if terminated.get("signal")
                      else f"ExitCode:{terminated.get('exitCode', 0)}")
        elif cs.get("ready") and state.get("running") is not None:
            running = True
            ready += 1
    if reason == "Completed" and running:
        ready_condition = any(c.get("type") == "Ready" and c.get("status") == "True"
                              for c in status.get("conditions") or [])
        reason = "Running" if ready_condition else "NotReady"
    if pod["metadata"].get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"
    shown_restarts = str(restarts)
    if restarts and last_restart:
        shown_restarts = f"{restarts} ({human_age(last_restart)} ago)"
    total = len(_spec(pod).get("containers") or [])
    return f"{ready}/{total}", reason, shown_restarts


def _pod_ip(pod: Obj) -> str:
    ips = _status(pod).get("podIPs") or []
    return (ips[0].get("ip") if ips else _status(pod).get("podIP")) or "<none>"


def _readiness_gates(pod: Obj) -> str:
    gates = _spec(pod).get("readinessGates") or []
    if not gates:
        return "<none>"
    conditions = {c.get("type"): c.get("status") for c in _status(pod).get("conditions") or []}
    true = sum(1 for g in gates if conditions.get(g.get("conditionType")) == "True")
    return f"{true}/{len(gates)}"


# -- jobs ---------------------------------------------------------------------------------


def _condition_true(obj: Obj, type_: str) -> bool:
    """``hasJobCondition``: the first condition of that type decides."""
    for cond in _status(obj).get("conditions") or []:
        if cond.get("type") == type_:
            return bool(cond.get("status") == "True")
    return False


def _job_status(job: Obj) -> str:
    if _condition_true(job, "Complete"):
        return "Complete"
    if _condition_true(job, "Failed"):
        return "Failed"
    if job["metadata"].get("deletionTimestamp"):
        return "Terminating"
    if _condition_true(job, "Suspended"):
        return "Suspended"
    if _condition_true(job, "FailureTarget"):
        return "FailureTarget"
    return "Running"


def _job_completions(job: Obj) -> str:
    succeeded = _status(job).get("succeeded") or 0
    completions = _spec(job).get("completions")
    if completions is not None:
        return f"{succeeded}/{completions}"
    parallelism = _spec(job).get("parallelism") or 0
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def _job_duration(job: Obj) -> str:
    status = _status(job)
    start = status.get("startTime")
    if not start:
        return ""
    end = status.get("completionTime")
    return human_age(start, clock.parse_time(end) if end else None)


def _template_containers(obj: Obj) -> list[Obj]:
    return list(_spec(_spec(obj).get("template") or {}).get("containers") or [])


def _container_names(obj: Obj) -> str:
    return ",".join(c.get("name", "") for c in _template_containers(obj))


def _container_images(obj: Obj) -> str:
    return ",".join(c.get("image", "") for c in _template_containers(obj))


def format_label_selector(selector: Obj | None) -> str:
    """``metav1.FormatLabelSelector``: ``<none>`` for nil or empty, else the string form."""
    if not selector:
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(sorted(values))})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(sorted(values))})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) or "<none>"


# -- other kinds --------------------------------------------------------------------------


def _node_status(node: Obj) -> str:
    ready = "Unknown"
    for cond in _status(node).get("conditions") or []:
        if cond.get("type") == "Ready":
            ready = "Ready" if cond.get("status") == "True" else "NotReady"
    if _spec(node).get("unschedulable"):
        ready += ",SchedulingDisabled"
    return ready


def _node_roles(node: Obj) -> str:
    roles = sorted(
        key.removeprefix("node-role.kubernetes.io/")
        for key in node["metadata"].get("labels") or {}
        if key.startswith("node-role.kubernetes.io/")
    )
    return ",".join(r for r in roles if r) or "<none>"


def _node_address(node: Obj, kind: str) -> str:
    for address in _status(node).get("addresses") or []:
        if address.get("type") == kind:
            return str(address.get("address", ""))
    return "<none>"


def _node_info(key: str) -> Callable[[Obj], str]:
    return lambda n: str((_status(n).get("nodeInfo") or {}).get(key, ""))


def _event_first(event: Obj) -> str:
    return human_age(event.get("firstTimestamp") or event.get("eventTime"))


def _event_last(event: Obj) -> str:
    series = event.get("series") or {}
    if series.get("lastObservedTime"):
        return human_age(series["lastObservedTime"])
    return human_age(event.get("lastTimestamp")) if event.get("lastTimestamp") else (
        _event_first(event))


def _event_object(event: Obj) -> str:
    involved = event.get("involvedObject") or {}
    kind = str(involved.get("kind", "")).lower()
    return f"{kind}/{involved['name']}" if involved.get("name") else kind


def _event_source(event: Obj) -> str:
    source = event.get("source") or {}
    component = source.get("component") or event.get("reportingComponent") or ""
    host = source.get("host") or event.get("reportingInstance") or ""
    return f"{component}, {host}" if host else component


def _event_count(event: Obj) -> int:
    series = event.get("series") or {}
    return int(series.get("count") or event.get("count") or 1)


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def _config_map_data(cm: Obj) -> int:
    return len(cm.get("data") or {}) + len(cm.get("binaryData") or {})


NAME = Column("Name", "string", "name", _name)
AGE = Column("Age", "string", "", _age)

_COLUMNS: dict[str, list[Column]] = {
    "Pod": [
        NAME,
        Column("Ready", "string", "", lambda p: _pod_cells(p)[0]),
        Column("Status", "string", "", lambda p: _pod_cells(p)[1]),
        Column("Restarts", "string", "", lambda p: _pod_cells(p)[2]),
        AGE,
        Column("IP", "string", "", _pod_ip, 1),
        Column("Node", "string", "", lambda p: _spec(p).get("nodeName") or "<none>", 1),
        Column("Nominated Node", "string", "",
               lambda p: _status(p).get("nominatedNodeName") or "<none>", 1),
        Column("Readiness Gates", "string", "", _readiness_gates, 1),
    ],
    "Job": [
        NAME,
        Column("Status", "string", "", _job_status),
        Column("Completions", "string", "", _job_completions),
        Column("Duration", "string", "", _job_duration),
        AGE,
        Column("Containers", "string", "", _container_names, 1),
        Column("Images", "string", "", _container_images, 1),
        Column("Selector", "string", "", lambda j: format_label_selector(_spec(j).get("selector")),
               1),
    ],
    "Deployment": [
        NAME,
        Column("Ready", "string", "", lambda d: "{}/{}".format(
            _status(d).get("readyReplicas") or 0, _spec(d).get("replicas", 1))),
        Column("Up-to-date", "string", "", lambda d: str(_status(d).get("updatedReplicas") or 0)),
        Column("Available", "string", "",
               lambda d: str(_status(d).get("availableReplicas") or 0)),
        AGE,
        Column("Containers", "string", "", _container_names, 1),
        Column("Images", "string", "", _container_images, 1),
        Column("Selector", "string", "", lambda d: format_label_selector(_spec(d).get("selector")),
               1),
    ],
    "Namespace": [
        NAME,
        Column("Status", "string", "", lambda n: _status(n).get("phase", "")),
        AGE,
    ],
    "ConfigMap": [NAME, Column("Data", "string", "", _config_map_data), AGE],
    "Secret": [
        NAME,
        Column("Type", "string", "", lambda s: s.get("type", "")),
        Column("Data", "string", "", lambda s: len(s.get("data") or {})),
        AGE,
    ],
    "ServiceAccount": [
        NAME,
        Column("Secrets", "string", "", lambda sa: len(sa.get("secrets") or [])),
        AGE,
    ],
    "Event": [
        Column("Last Seen", "string", "", _event_last),
        Column("Type", "string", "", lambda e: e.get("type", "")),
        Column("Reason", "string", "", lambda e: e.get("reason", "")),
        Column("Object", "string", "", _event_object),
        Column("Subobject", "string", "",
               lambda e: (e.get("involvedObject") or {}).get("fieldPath", ""), 1),
        Column("Source", "string", "", _event_source, 1),
        Column("Message", "string", "", lambda e: str(e.get("message", "")).strip()),
        Column("First Seen", "string", "", _event_first, 1),
        Column("Count", "string", "", _event_count, 1),
        Column("Name", "string", "name", _name, 1),
    ],
    "Node": [
        NAME,
        Column("Status", "string", "", _node_status),
        Column("Roles", "string", "", _node_roles),
        AGE,
        Column("Version", "string", "", _node_info("kubeletVersion")),
        Column("Internal-IP", "string", "", lambda n: _node_address(n, "InternalIP"), 1),
        Column("External-IP", "string", "", lambda n: _node_address(n, "ExternalIP"), 1),
        Column("OS-Image", "string", "", _node_info("osImage"), 1),
        Column("Kernel-Version", "string", "", _node_info("kernelVersion"), 1),
        Column("Container-Runtime", "string", "", _node_info("containerRuntimeVersion"), 1),
    ],
}

_POD_DONE = {
    "Succeeded": {"type": "Completed", "status": "True", "reason": "Succeeded",
                  "message": "The pod has completed successfully."},
    "Failed": {"type": "Completed", "status": "True", "reason": "Failed",
               "message": "The pod failed."},
}


def _row(rt: ResourceType, columns: list[Column], item: Obj) -> Obj:
    row: Obj = {
        "cells": [column.value(item) for column in columns],
        "object": {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": item["metadata"],
        },
    }
    done = _POD_DONE.get(_status(item).get("phase", "")) if rt.kind == "Pod" else None
    if done:
        row["conditions"] = [dict(done)]
    return row


def to_table(rt: ResourceType, items: list[Obj], resource_version: str) -> Obj:
    """A Table with one row per object; each row carries the object's metadata, as kubectl
    needs it for ``--show-labels`` and for naming rows."""
    columns = _COLUMNS.get(rt.kind, [NAME, AGE])
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {"name": c.name, "type": c.type, "format": c.format, "description": "",
             "priority": c.priority}
            for c in columns
        ],
        "rows": [_row(rt, columns, item) for item in items],
    }
