"""A sandbox's Job, pods and events (API dicts) -> findings. Pure: no client, no I/O.

Kept apart from the reads so recorded objects (a real kubelet's OOMKilled or Evicted pod,
which the devcluster cannot produce) test the same code a live cluster drives. Detection
reuses what :mod:`..backends.kubernetes.lifecycle` already knows for ``init()``
(:func:`describe_pod_problem`, :func:`job_event_problem`), so a startup error and a
diagnosis never disagree about what the same pod means.

Root causes come first: an OOM-killed or evicted pod also fails its Job
(``BackoffLimitExceeded``), which is reported only when nothing more specific was found.
"""

from __future__ import annotations

import re
from typing import Any

from ..backends.kubernetes.api import (
    RBAC_MANIFEST,
    JobRef,
    container_status,
    event_time,
    spec_container,
    spec_image,
)
from ..backends.kubernetes.lifecycle import describe_pod_problem, job_event_problem
from ..backends.kubernetes.status import newest_pod
from ..errors import (
    ImagePullError,
    PodSecurityViolation,
    QuotaExceeded,
    ServiceAccountMissing,
    Unschedulable,
)
from .report import Finding

__all__ = ["event_line", "sandbox_findings"]

_QUOTA_NAME = re.compile(r"exceeded quota: (?P<name>[^,\s]+)")
_TAINT = re.compile(r"untolerated taint \{(?P<taint>[^}]*)\}")
_DEADLINE_FIX = ("a finished Job cannot be revived: create a new sandbox with a larger "
                 "active_deadline_seconds (SANDBOXKIT_ACTIVE_DEADLINE_SECONDS)")
_EVICTED_RESOURCE = re.compile(r"low on resource: (?P<resource>[\w-]+(?:\.[\w-]+)*)")


def event_line(event: dict[str, Any]) -> str:
    """An event as ``kubectl describe`` lists it: type, reason, (count), message verbatim."""
    count = int(event.get("count") or 1)
    times = f" (x{count})" if count > 1 else ""
    return f"{event.get('type', '')} {event.get('reason', '')}{times}: {event.get('message', '')}"


def sandbox_findings(name: str, namespace: str, job: dict[str, Any],
                     pods: list[dict[str, Any]], events: list[dict[str, Any]]) -> list[Finding]:
    """What is wrong with the sandbox whose Job is ``job`` (never None here: a missing Job
    needs API reads to explain, see :mod:`.diagnose`), or one "ok" finding."""
    events = sorted(events, key=event_time)
    findings: list[Finding] = []
    if job.get("metadata", {}).get("deletionTimestamp"):
        findings.append(Finding(
            "warning", f"sandbox {name} is being deleted",
            evidence=f"Job deletionTimestamp {job['metadata']['deletionTimestamp']}",
            fix="create a new sandbox; this one is going away", reason="Deleting"))
    findings += _job_event_findings(JobRef.from_job(job), events)
    pod = newest_pod(pods)
    if pod is not None:
        pod_uid = pod.get("metadata", {}).get("uid")
        pod_events = [e for e in events if (e.get("involvedObject") or {}).get("uid") == pod_uid]
        findings += _pod_findings(name, namespace, pod, pod_events)
    job_failed = _job_condition_findings(name, job, root_cause_known=bool(findings))
    if any(f.reason == "DeadlineExceeded" for f in job_failed):
        # The Job's condition says it with the deadline; the kubelet's is the same news.
        findings = [f for f in findings if f.reason != "DeadlineExceeded"]
    findings += job_failed
    if not findings:
        findings.append(_progress(name, job, pod, events))
    return findings


# --- the Job ------------------------------------------------------------------------------


def _job_event_findings(job: JobRef, events: list[dict[str, Any]]) -> list[Finding]:
    """The latest FailedCreate: why the Job controller could not create the pod."""
    failed = [e for e in events if (e.get("involvedObject") or {}).get("uid") == job.uid
              and e.get("reason") == "FailedCreate"]
    if not failed:
        return []
    event = failed[-1]
    problem = job_event_problem(event, job)
    evidence = event_line(event)
    ns = job.namespace
    if isinstance(problem, QuotaExceeded):
        quota = _QUOTA_NAME.search(event.get("message", ""))
        quota_name = quota.group("name") if quota else "<name>"
        return [Finding(
            "error", f"a ResourceQuota in {ns} refused the sandbox's pod", evidence,
            f"see what uses the quota: kubectl describe resourcequota {quota_name} -n {ns}\n"
            f"free some: sandboxkit gc -n {ns} (finished and orphaned sandboxes)\n"
            f"or raise it: kubectl edit resourcequota {quota_name} -n {ns} (spec.hard)\n"
            "or ask for less: create_sandbox(cpu_request=..., memory_request=..., "
            "cpu_limit=..., memory_limit=...)", "FailedCreate")]
    if isinstance(problem, PodSecurityViolation):
        return [Finding(
            "error", f"namespace {ns} enforces Pod Security {problem.level!r}, which the pod "
            "breaks", evidence,
            "create the sandbox with security_profile='restricted', or relax the namespace: "
            f"kubectl label namespace {ns} pod-security.kubernetes.io/enforce=baseline "
            "--overwrite", "FailedCreate")]
    if isinstance(problem, ServiceAccountMissing):
        return [Finding(
            "error", "the ServiceAccount the sandbox runs as does not exist", evidence,
            f"kubectl apply -n {ns} -f {RBAC_MANIFEST}   (or: sandboxkit rbac apply -n {ns})\n"
            "or create the sandbox with service_account= naming an existing one",
            "FailedCreate")]
    return [Finding("error", "the Job controller cannot create the sandbox's pod", evidence,
                    f"read the message above; kubectl describe job {job.name} -n {ns}",
                    "FailedCreate")]


def _job_condition_findings(name: str, job: dict[str, Any], *,
                            root_cause_known: bool) -> list[Finding]:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        kind, reason = condition.get("type"), condition.get("reason", "")
        evidence = f"Job condition {kind}: {reason}: {condition.get('message', '')}"
        if kind == "Failed" and reason == "DeadlineExceeded":
            deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
            return [Finding(
                "error", f"sandbox {name} outlived its deadline "
                f"(activeDeadlineSeconds={deadline}) and was stopped", evidence,
                _DEADLINE_FIX, reason)]
        if kind == "Failed" and not root_cause_known:
            return [Finding("error", f"sandbox {name}'s Job failed ({reason})", evidence,
                            f"kubectl describe job {name} -n {job['metadata'].get('namespace')}"
                            "; create a new sandbox", reason)]
        if kind == "Complete":
            return [Finding("error", f"sandbox {name}'s Job completed: its idle process exited",
                            evidence, "the image's `tail` must keep running: check the image "
                            "and create a new sandbox", reason or "Complete")]
    return []


# --- the pod ------------------------------------------------------------------------------


def _pod_findings(name: str, namespace: str, pod: dict[str, Any],
                  events: list[dict[str, Any]]) -> list[Finding]:
    status = pod.get("status", {})
    pod_name = pod.get("metadata", {}).get("name", "")
    if status.get("reason") == "Evicted":
        return [_evicted(pod_name, pod, events)]
    container = container_status(pod)
    for key in ("state", "lastState"):
        terminated = (container.get(key) or {}).get("terminated") or {}
        if terminated.get("reason") == "OOMKilled":
            return [_oom_killed(pod_name, pod, terminated)]
    problem = describe_pod_problem(pod, name)
    waiting = (container.get("state") or {}).get("waiting") or {}
    if isinstance(problem, ImagePullError):
        return [_image_pull(problem, waiting, events)]
    if isinstance(problem, Unschedulable):
        return [_unschedulable(pod, events)]
    if problem is not None:
        if status.get("reason") == "DeadlineExceeded":
            return [Finding("error", f"pod {pod_name} outlived its activeDeadlineSeconds",
                            f"pod status DeadlineExceeded: {status.get('message', '')}",
                            _DEADLINE_FIX, "DeadlineExceeded")]
        detail = waiting.get("message") or status.get("message") or ""
        return [Finding("error", f"pod {pod_name} cannot run: {problem.reason}",
                        "\n".join(filter(None, [detail, *map(event_line, events[-3:])])),
                        f"kubectl describe pod {pod_name} -n {namespace}; fix the image or "
                        "command and create a new sandbox", problem.reason)]
    return []


def _image_pull(problem: ImagePullError, waiting: dict[str, Any],
                events: list[dict[str, Any]]) -> Finding:
    pulls = [event_line(e) for e in events if e.get("reason") in ("Failed", "BackOff")]
    evidence = "\n".join([f"container waiting: {problem.reason}: {waiting.get('message', '')}",
                          *pulls[-2:]])
    if problem.reason == "InvalidImageName":
        fix = (f"{problem.image!r} is not a valid image reference (lower-case repository, "
               "optional :tag or @sha256:digest): create the sandbox with a valid image=, "
               "for example image='python:3.11'")
    else:
        fix = (f"check the name and tag exist: docker manifest inspect {problem.image}\n"
               "a private registry needs an imagePullSecret on the ServiceAccount: "
               "kubectl patch serviceaccount ci-fixer-sandbox -p "
               "'{\"imagePullSecrets\": [{\"name\": \"<secret>\"}]}'\n"
               "then create the sandbox with the corrected image=")
    return Finding("error", f"image {problem.image!r} cannot be pulled", evidence, fix,
                   problem.reason)


def _unschedulable(pod: dict[str, Any], events: list[dict[str, Any]]) -> Finding:
    condition = next((c for c in pod.get("status", {}).get("conditions") or []
                      if c.get("type") == "PodScheduled"), {})
    message = condition.get("message", "")
    scheduling = [event_line(e) for e in events if e.get("reason") == "FailedScheduling"]
    evidence = scheduling[-1] if scheduling else f"PodScheduled False: {message}"
    requests = (spec_container(pod).get("resources") or {}).get("requests") or {}
    taint = _TAINT.search(message)
    short = [r for r in ("cpu", "memory") if f"Insufficient {r}" in message]
    if short:
        asked = ", ".join(f"{r} {requests.get(r, '?')}" for r in short)
        flags = " ".join(f"--{r} <less>" for r in short)
        args = ", ".join(f"{r}_request=..." for r in short)
        return Finding(
            "error", f"no node has room for the sandbox's requests ({asked})", evidence,
            f"ask for less: create_sandbox({args}) or %sandbox_up {flags}\n"
            "see what nodes offer: kubectl describe nodes (Allocatable, Allocated resources)\n"
            "or add capacity to the cluster", "FailedScheduling")
    if taint:
        return Finding(
            "error", f"every node carries a taint the sandbox does not tolerate "
            f"({taint.group('taint')})", evidence,
            "sandboxes set no tolerations: run them where nodes are untainted, or ask an "
            "administrator to remove the taint (kubectl taint nodes NODE KEY-)",
            "FailedScheduling")
    return Finding("error", "no node can run the sandbox's pod", evidence,
                   "read the scheduler's reasons above (kubectl describe nodes)",
                   "FailedScheduling")


def _oom_killed(pod_name: str, pod: dict[str, Any], terminated: dict[str, Any]) -> Finding:
    limit = ((spec_container(pod).get("resources") or {}).get("limits") or {}).get("memory", "?")
    evidence = (f"container terminated: OOMKilled (exit code {terminated.get('exitCode')}) "
                f"at {terminated.get('finishedAt', '?')}; memory limit {limit}")
    return Finding(
        "error", f"the sandbox's container in pod {pod_name} ran out of memory and was killed",
        evidence,
        "a command used more than the memory limit: create the sandbox with a larger one, "
        "memory_limit='4Gi' (or %sandbox_up --memory 1Gi:4Gi), or make the command use less",
        "OOMKilled")


def _evicted(pod_name: str, pod: dict[str, Any], events: list[dict[str, Any]]) -> Finding:
    message = pod.get("status", {}).get("message", "")
    evicted = [event_line(e) for e in events if e.get("reason") == "Evicted"]
    evidence = evicted[-1] if evicted else f"pod status Evicted: {message}"
    resource = _EVICTED_RESOURCE.search(message)
    starved = resource.group("resource") if resource else "a resource"
    if starved == "memory":
        fix = ("the kubelet evicts pods using more than they request first: create the "
               "sandbox with memory_request close to what it uses (memory_request='2Gi')")
    elif starved == "ephemeral-storage":
        fix = ("the sandbox filled the node's disk: write less under /tmp, or use a "
               "workspace volume (workspace_pvc=) for big checkouts")
    else:
        fix = "the node was under pressure: create a new sandbox (it may land elsewhere)"
    return Finding("error", f"the node evicted pod {pod_name} (it was low on {starved})",
                   evidence, fix, "Evicted")


def _progress(name: str, job: dict[str, Any], pod: dict[str, Any] | None,
              events: list[dict[str, Any]]) -> Finding:
    """Nothing wrong: the sandbox runs ("ok"), or is still on its way ("info")."""
    if pod is None:
        latest = "\n".join(event_line(e) for e in events[-3:])
        return Finding("info", f"sandbox {name} has no pod yet", latest or "no events yet",
                       f"wait, or watch: kubectl get events -n {job['metadata'].get('namespace')}"
                       f" --field-selector involvedObject.name={name}", "Pending")
    pod_name = pod["metadata"].get("name", "")
    container = container_status(pod)
    running = (container.get("state") or {}).get("running")
    node = pod.get("spec", {}).get("nodeName", "")
    if pod.get("status", {}).get("phase") == "Running" and running is not None:
        return Finding("ok", f"sandbox {name} is running",
                       f"pod {pod_name} Running on node {node} since "
                       f"{running.get('startedAt', '?')}, image {spec_image(pod)}", "",
                       "Running")
    waiting = (container.get("state") or {}).get("waiting") or {}
    return Finding("info", f"sandbox {name} is starting",
                   f"pod {pod_name} {pod.get('status', {}).get('phase', '')}"
                   + (f", container waiting: {waiting.get('reason')}" if waiting else ""),
                   "wait; diagnose again if it stays like this", waiting.get("reason", "Pending"))
