"""``docker inspect`` and the event stream, in the Job/pod vocabulary of SandboxStatus.

Widgets and diagnostics read one vocabulary whatever the backend: a running container is an
Active job with a Running pod, a dead one a Failed (or Complete) job with the reason
Kubernetes would give (OOMKilled, Error, Completed), and Docker's container events become
Kubernetes-style event dicts (reason, message, type, time).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ...manifests import ID_LABEL
from ...models import SandboxStatus

__all__ = ["container_events", "container_status", "first_event", "rfc3339",
           "terminated_reason", "unix_time"]

_EVENT_REASONS = {"create": "Created", "start": "Started", "kill": "Killing", "die": "Died",
                  "oom": "OOMKilling", "destroy": "Deleted"}
_WARNING_EVENTS = {"die", "oom"}


def terminated_reason(state: Mapping[str, Any]) -> str:
    """The reason Kubernetes would give a container in this Docker state."""
    if state.get("OOMKilled"):
        return "OOMKilled"
    if state.get("Status") in ("exited", "dead"):
        return "Completed" if state.get("ExitCode") == 0 else "Error"
    if state.get("Status") == "removing":
        return "Deleting"
    return str(state.get("Status") or "Unknown")


def container_status(attrs: Mapping[str, Any], events: list[dict[str, Any]]) -> SandboxStatus:
    """A SandboxStatus from ``docker inspect`` output and :func:`container_events`."""
    state = attrs["State"]
    status = state.get("Status", "")
    labels = attrs["Config"].get("Labels") or {}
    host = attrs.get("HostConfig") or {}
    if status == "running":
        job_phase, pod_phase, container_state, reason = "Active", "Running", "running", ""
    elif status == "created":
        job_phase, pod_phase, container_state, reason = "Active", "Pending", "waiting", ""
    else:
        reason = terminated_reason(state)
        failed = reason != "Completed"
        job_phase = "Deleting" if status == "removing" else "Failed" if failed else "Complete"
        pod_phase = "Failed" if failed else "Succeeded"
        container_state = "terminated"
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    ip = next((n.get("IPAddress") for n in networks.values() if n.get("IPAddress")), "")
    limits = {}
    if host.get("NanoCpus"):
        limits["cpu"] = f"{host['NanoCpus'] // 10**6}m"
    if host.get("Memory"):
        limits["memory"] = str(host["Memory"])
    return SandboxStatus(
        name=labels.get(ID_LABEL) or attrs["Name"].lstrip("/"), namespace="",
        job_phase=job_phase, pod_name=attrs["Name"].lstrip("/"), pod_phase=pod_phase,
        container_state=container_state, reason=reason, message=state.get("Error", ""),
        pod_ip=ip, restarts=attrs.get("RestartCount", 0), image=attrs["Config"]["Image"],
        created=rfc3339(unix_time(attrs["Created"])), labels=dict(labels),
        events=tuple({k: v for k, v in e.items() if k not in ("action", "unix")}
                     for e in events[-10:]),
        job_active=1 if status in ("running", "created") else 0,
        exit_code=state.get("ExitCode") if container_state == "terminated" else None,
        limits=limits, deleting=status == "removing",
    )


def container_events(api: Any, container: str, name: str,
                     since: float) -> list[dict[str, Any]]:
    """The container's lifecycle events from unix time ``since`` until now, as Kubernetes
    event dicts (plus ``action`` and ``unix``, Docker's own, for callers that reason about
    them)."""
    events = []
    stream = api.events(since=since - 1, until=time.time(), decode=True,
                        filters={"container": container, "type": "container"})
    for event in stream:
        action = str(event.get("Action", "")).split(":")[0]
        if action not in _EVENT_REASONS:
            continue
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        message = f"container {action}"
        if "exitCode" in attributes:
            message += f" with exit code {attributes['exitCode']}"
        events.append({
            "type": "Warning" if action in _WARNING_EVENTS else "Normal",
            "reason": _EVENT_REASONS[action], "message": message, "count": 1,
            "time": rfc3339(event.get("time", 0)), "object": f"container/{name}",
            "action": action, "unix": event.get("time", 0),
        })
    return events


def first_event(api: Any, container: str, since: float, actions: list[str],
                seconds: float) -> str | None:
    """The first of ``actions`` to happen to the container since ``since``, waiting up to
    ``seconds`` (from now) for one."""
    stream = api.events(since=since, until=time.time() + seconds,
                        decode=True, filters={"container": container, "event": actions})
    try:
        event = next(iter(stream), None)
    finally:
        stream.close()
    return None if event is None else str(event.get("Action"))


def unix_time(timestamp: str) -> float:
    """Docker's RFC 3339 timestamps carry nanoseconds, more than datetime parses."""
    head, _, fraction = timestamp.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp()
    return seconds + float(f"0.{fraction[:6] or 0}")


def rfc3339(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
