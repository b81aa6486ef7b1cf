"""A sandbox's Job, pod and events (API dicts) -> :class:`SandboxStatus`.

One pure builder serves :meth:`KubernetesSandbox.status` (which reads the three with GETs),
:func:`list_statuses` (two list calls for a whole namespace) and :mod:`sandboxkit.feed`
(which keeps them current from watches), so a snapshot, a listing and a live widget never
disagree about what the same objects mean.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ...manifests import sandbox_selector
from ...models import SandboxStatus
from .api import container_status, event_time, request_json, spec_container, spec_image
from .client import Connection

__all__ = ["STATUS_EVENTS", "event_summary", "list_labelled", "list_statuses", "newest_pod",
           "sandbox_status"]

# How many of the latest events a status carries: enough to see a pull retrying or a
# scheduling failure repeating, few enough to read in a widget.
STATUS_EVENTS = 10


def sandbox_status(
    name: str, namespace: str, job: dict[str, Any] | None, pod: dict[str, Any] | None,
    events: list[dict[str, Any]],
) -> SandboxStatus:
    """The status of sandbox ``name``: ``job`` None means it is gone ("Missing"), ``pod``
    None that it has none (yet, or any more); ``events`` about either, in any order."""
    fields: dict[str, Any] = {"job_phase": _job_phase(job)}
    if job is not None:
        job_status = job.get("status") or {}
        fields.update(
            job_active=int(job_status.get("active") or 0),
            job_succeeded=int(job_status.get("succeeded") or 0),
            job_failed=int(job_status.get("failed") or 0),
            job_conditions=tuple(
                {key: str(c.get(key) or "") for key in ("type", "status", "reason", "message")}
                for c in job_status.get("conditions") or []),
        )
        template = (job.get("spec") or {}).get("template") or {}
        fields.update(_resources(template), image=spec_image(template))
    if pod is not None:
        fields.update(_pod_fields(pod))
    fields["deleting"] = any((obj or {}).get("metadata", {}).get("deletionTimestamp")
                             for obj in (job, pod))
    source = (job or pod or {}).get("metadata", {})
    return SandboxStatus(
        name=name, namespace=namespace, created=source.get("creationTimestamp", "") or "",
        labels=dict(source.get("labels") or {}),
        events=tuple(event_summary(e) for e in sorted(events, key=event_time)[-STATUS_EVENTS:]),
        **fields)


def newest_pod(pods: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The pod a status describes when a Job has several (a retry): the newest."""
    return max(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), default=None)


def _job_phase(job: dict[str, Any] | None) -> str:
    """Since Kubernetes 1.31 a finishing Job first gets ``SuccessCriteriaMet`` or
    ``FailureTarget`` and keeps it while its pods terminate, and only then ``Complete`` or
    ``Failed``: the outcome is decided at the first, so that is when the phase changes."""
    if job is None:
        return "Missing"
    if job["metadata"].get("deletionTimestamp"):
        return "Deleting"
    if _condition(job, "Complete") or _condition(job, "SuccessCriteriaMet"):
        return "Complete"
    if _condition(job, "Failed") or _condition(job, "FailureTarget"):
        return "Failed"
    return "Active"


def _condition(obj: dict[str, Any], kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True"
               for c in obj.get("status", {}).get("conditions") or [])


def _pod_fields(pod: dict[str, Any]) -> dict[str, Any]:
    """What the pod adds: phase, the sandbox container's state and why, where it runs."""
    meta, spec, status = pod["metadata"], pod.get("spec", {}), pod.get("status", {})
    container = container_status(pod)
    state = container.get("state") or {}
    kind = next(iter(state), "")
    detail = state.get(kind) or {}
    reason, message = detail.get("reason", ""), detail.get("message", "")
    if not reason:
        # No container reason (not scheduled yet, say): the first failing condition's.
        for condition in status.get("conditions") or []:
            if condition.get("status") == "False" and condition.get("reason"):
                reason, message = condition["reason"], condition.get("message", "")
                break
    exit_code = detail.get("exitCode") if kind == "terminated" else None
    return {
        "pod_name": meta.get("name", ""),
        "pod_phase": status.get("phase", ""),
        "container_state": kind,
        "reason": status.get("reason") or reason or "",
        "message": status.get("message") or message or "",
        "exit_code": None if exit_code is None else int(exit_code),
        "node": spec.get("nodeName", "") or "",
        "pod_ip": status.get("podIP", "") or "",
        "restarts": int(container.get("restartCount", 0) or 0),
        "image": container.get("image") or spec_image(pod),
        **_resources(pod),
    }


def _resources(pod: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Requests and limits of the sandbox container of a pod or pod template."""
    resources = spec_container(pod).get("resources") or {}
    return {"requests": {k: str(v) for k, v in (resources.get("requests") or {}).items()},
            "limits": {k: str(v) for k, v in (resources.get("limits") or {}).items()}}


def event_summary(event: dict[str, Any]) -> dict[str, Any]:
    """The parts of an Event a person reads: type, reason, message, count, time, object."""
    involved = event.get("involvedObject") or {}
    return {
        "type": event.get("type", ""),
        "reason": event.get("reason", ""),
        "message": event.get("message", ""),
        "object": f"{involved.get('kind', '')}/{involved.get('name', '')}",
        "count": event.get("count") or 1,
        "time": event_time(event),
    }


def list_labelled(conn: Connection, kind: str, namespace: str | None, all_namespaces: bool,
                  selector: str | None = None) -> list[dict[str, Any]]:
    """Every Job (``kind`` "job") or pod ("pod") matching ``selector`` (default: every
    sandbox's) in ``namespace`` (None: the connection's) or all namespaces: one list call."""
    api = conn.batch() if kind == "job" else conn.core()
    selector = selector or sandbox_selector()
    if all_namespaces:
        call = getattr(api, f"list_{kind}_for_all_namespaces")
        listing = request_json(call, label_selector=selector)
    else:
        call = getattr(api, f"list_namespaced_{kind}")
        listing = request_json(call, namespace or conn.namespace, label_selector=selector)
    return listing.get("items") or []


def list_statuses(
    conn: Connection, namespace: str | None = None, *, all_namespaces: bool = False,
    with_pods: bool = True,
) -> list[tuple[dict[str, Any], SandboxStatus]]:
    """Every sandbox Job (label ``app=ci-fixer-sandbox``) with its status, in two list calls
    whatever their number: the Jobs, then their pods, each Job's newest pod found by
    ownerReferences (the Job's uid). ``namespace`` None means the connection's;
    ``with_pods=False`` saves the second call where the Jobs alone decide."""
    jobs = list_labelled(conn, "job", namespace, all_namespaces)
    pods = list_labelled(conn, "pod", namespace, all_namespaces) if with_pods else []
    owned: dict[str, list[dict[str, Any]]] = {}
    for pod in pods:
        for ref in pod["metadata"].get("ownerReferences") or []:
            owned.setdefault(ref.get("uid", ""), []).append(pod)
    result = []
    for job in jobs:
        meta = job["metadata"]
        pod = newest_pod(owned.get(meta.get("uid", ""), []))
        result.append((job, sandbox_status(meta["name"], meta.get("namespace", ""), job, pod,
                                           [])))
    return result
