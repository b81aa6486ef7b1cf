"""Server-side printing: the ``meta.k8s.io/v1`` Table kubectl asks for with ``as=Table``.

kubectl renders whatever columns the server sends, so these column sets are what
``kubectl get`` shows; they follow the API server's printers for the kinds people look at.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from . import clock
from .resources import ResourceType

__all__ = ["human_age", "to_table", "wants_table"]

Column = tuple[str, str, str, Callable[[dict[str, Any]], Any]]


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def human_age(timestamp: str | None, now: datetime | None = None) -> str:
    """Durations as kubectl prints them: 45s, 5m10s, 3h, 2d4h."""
    if not timestamp:
        return "<unknown>"
    seconds = int(((now or datetime.now(UTC)) - clock.parse_time(timestamp))
                  .total_seconds())
    seconds = max(seconds, 0)
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    return f"{days}d{hours % 24}h" if days < 8 and hours % 24 else f"{days}d"


def _age(obj: dict[str, Any]) -> str:
    return human_age(obj["metadata"].get("creationTimestamp"))


def _pod_status(pod: dict[str, Any]) -> str:
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status", {})
    reason = status.get("reason") or status.get("phase", "Pending")
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state", {})
        if "waiting" in state and state["waiting"].get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state:
            term = state["terminated"]
            reason = term.get("reason") or f"ExitCode:{term.get('exitCode')}"
    return reason


def _pod_ready(pod: dict[str, Any]) -> str:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    total = len(pod.get("spec", {}).get("containers", []))
    return f"{sum(1 for cs in statuses if cs.get('ready'))}/{total}"


def _restarts(pod: dict[str, Any]) -> int:
    return sum(cs.get("restartCount", 0)
               for cs in pod.get("status", {}).get("containerStatuses") or [])


def _job_status(job: dict[str, Any]) -> str:
    status = job.get("status", {})
    for cond in status.get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return str(cond["type"])
    if job["metadata"].get("deletionTimestamp"):
        return "Terminating"
    if job.get("spec", {}).get("suspend"):
        return "Suspended"
    return "Running"


def _job_duration(job: dict[str, Any]) -> str:
    status = job.get("status", {})
    start = status.get("startTime")
    if not start:
        return ""
    end = status.get("completionTime")
    return human_age(start, clock.parse_time(end) if end else None)


def _name(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["name"])


NAME: Column = ("Name", "string", "name", _name)
AGE: Column = ("Age", "string", "date", _age)

_COLUMNS: dict[str, list[Column]] = {
    "Pod": [
        NAME,
        ("Ready", "string", "", _pod_ready),
        ("Status", "string", "", _pod_status),
        ("Restarts", "string", "", lambda p: str(_restarts(p))),
        AGE,
        ("IP", "string", "", lambda p: p.get("status", {}).get("podIP") or "<none>"),
        ("Node", "string", "", lambda p: p.get("spec", {}).get("nodeName") or "<none>"),
    ],
    "Job": [
        NAME,
        ("Status", "string", "", _job_status),
        ("Completions", "string", "", lambda j: "{}/{}".format(
            j.get("status", {}).get("succeeded", 0), j.get("spec", {}).get("completions", 1))),
        ("Duration", "string", "", _job_duration),
        AGE,
    ],
    "Namespace": [
        NAME,
        ("Status", "string", "", lambda n: n.get("status", {}).get("phase", "")),
        AGE,
    ],
    "Event": [
        ("Last Seen", "string", "", lambda e: human_age(e.get("lastTimestamp"))),
        ("Type", "string", "", lambda e: e.get("type", "")),
        ("Reason", "string", "", lambda e: e.get("reason", "")),
        ("Object", "string", "", lambda e: "{}/{}".format(
            e.get("involvedObject", {}).get("kind", "").lower(),
            e.get("involvedObject", {}).get("name", ""))),
        ("Message", "string", "", lambda e: e.get("message", "")),
    ],
    "ServiceAccount": [NAME, AGE],
    "Node": [
        NAME,
        ("Status", "string", "", lambda n: "Ready"),
        ("Roles", "string", "", lambda n: "<none>"),
        AGE,
        ("Version", "string", "", lambda n: n.get("status", {}).get("nodeInfo", {})
         .get("kubeletVersion", "")),
    ],
}


def to_table(
    rt: ResourceType, items: list[dict[str, Any]], resource_version: str
) -> dict[str, Any]:
    """A Table with one row per object; each row carries the object's metadata, as kubectl
    needs it for ``--show-labels`` and for naming rows."""
    columns = _COLUMNS.get(rt.kind, [NAME, AGE])
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {"name": title, "type": type_, "format": fmt, "description": "", "priority": 0}
            for title, type_, fmt, _ in columns
        ],
        "rows": [
            {
                "cells": [value(item) for *_, value in columns],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": item["metadata"],
                },
            }
            for item in items
        ],
    }
