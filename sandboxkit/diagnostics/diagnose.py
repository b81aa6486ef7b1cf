"""diagnose(): read one sandbox's Job, pods and events and say what is wrong, with the fix.

Reads are what ``kubectl describe job`` does, plus SelfSubjectAccessReviews where a
permission decides the answer (exec, creating Jobs): a sandbox that runs but cannot be
exec'd into is as broken as one that never started. A read the caller may not make becomes
a finding too (with the Role rule it needs), not an exception.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from ..backends.base import Sandbox
from ..backends.kubernetes.api import JobRef, event_time, pod_events, request_json
from ..backends.kubernetes.client import Connection, connected
from ..errors import PermissionDenied
from .access import denied_finding, from_denied, rbac_objects_finding, unreachable_finding
from .report import Diagnosis, Finding
from .rules import event_line, sandbox_findings

__all__ = ["diagnose"]


def diagnose(target: Sandbox | str, namespace: str | None = None, *,
             connection: Connection | None = None) -> Diagnosis:
    """Findings about a sandbox: a :class:`Sandbox` (its name, namespace and connection) or
    the name of its Job. ``namespace`` None means the connection's; ``connection`` None
    resolves the cluster as kubectl does. ``.ok`` is False when something is wrong."""
    from ..backends.kubernetes.sandbox import KubernetesSandbox

    if isinstance(target, KubernetesSandbox):
        return _diagnose(target.connection, target.name, namespace or target.namespace)
    if isinstance(target, Sandbox):
        return _from_status(target)
    with connected(connection) as conn:
        return _diagnose(conn, target, namespace or conn.namespace)


def _diagnose(conn: Connection, name: str, namespace: str) -> Diagnosis:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    findings: list[Finding] = []
    job: dict[str, Any] | None = None
    try:
        job = request_json(conn.batch().read_namespaced_job, name, namespace)
    except (HTTPError, OSError) as exc:  # no answer at all: nothing else can be read
        return Diagnosis(name, namespace, (unreachable_finding(conn, exc),))
    except PermissionDenied as denied:
        findings.append(from_denied(denied, namespace))
    except ApiException as exc:
        if exc.status != 404:
            raise
        findings.append(_job_missing(conn, name, namespace, exc))
    if job is None:
        create = denied_finding(conn, "batch", "jobs", "create", namespace)
        if create is not None:
            findings.append(create)
    else:
        findings += _job_findings(conn, name, namespace, job)
        exec_denied = denied_finding(conn, "", "pods/exec", "create", namespace)
        if exec_denied is not None:
            findings.append(exec_denied)
    # Only a refusal or an absence can come from missing RBAC; a bad image cannot.
    if any(f.reason in ("Forbidden", "NotFound") for f in findings):
        installed = rbac_objects_finding(conn, namespace)
        if installed is not None:
            findings.append(installed)
    return Diagnosis(name, namespace, tuple(findings))


def _job_findings(conn: Connection, name: str, namespace: str,
                  job: dict[str, Any]) -> list[Finding]:
    ref = JobRef.from_job(job)
    findings: list[Finding] = []
    try:
        pods = request_json(conn.core().list_namespaced_pod, namespace,
                            label_selector=ref.selector).get("items") or []
    except PermissionDenied as denied:
        findings.append(from_denied(denied, namespace))
        pods = []
    try:
        events = pod_events(conn, namespace, [ref.uid, *(p["metadata"]["uid"] for p in pods)])
    except PermissionDenied as denied:  # the seed Role has no events: evidence is thinner
        findings.append(from_denied(denied, namespace, severity="warning"))
        events = []
    return findings + sandbox_findings(name, namespace, job, pods, events)


def _job_missing(conn: Connection, name: str, namespace: str, exc: Exception) -> Finding:
    """No Job: say so, with the last events recorded about it (they outlive the Job)."""
    message = str(getattr(exc, "body", "") or "")
    with contextlib.suppress(ValueError):
        message = json.loads(message).get("message", message)
    try:
        listing = request_json(conn.core().list_namespaced_event, namespace,
                               field_selector=f"involvedObject.name={name}")
        events = sorted((e for e in listing.get("items") or []
                         if (e.get("involvedObject") or {}).get("kind") == "Job"), key=event_time)
    except PermissionDenied:
        events = []
    evidence = "\n".join([f"404 NotFound: {message}", *map(event_line, events[-3:])])
    return Finding(
        "error", f"sandbox {name} does not exist in namespace {namespace} (no such Job)",
        evidence,
        "it was deleted (teardown, `sandboxkit gc`, or ttlSecondsAfterFinished after it "
        f"finished) or never created: list sandboxes with `sandboxkit ls -n {namespace}` and "
        "create a new one", "NotFound")


def _from_status(sandbox: Sandbox) -> Diagnosis:
    """Another backend (docker, local): its status() in Kubernetes terms is all there is."""
    status = sandbox.status()
    evidence = f"{status.display_status}" + (f": {status.message}" if status.message else "")
    if status.running:
        finding = Finding("ok", f"sandbox {status.name} is running", evidence, "", "Running")
    else:
        finding = Finding("error", f"sandbox {status.name} is not running", evidence,
                          "create a new sandbox", status.reason or status.job_phase)
    return Diagnosis(status.name, status.namespace, (finding,))
