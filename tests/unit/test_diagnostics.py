"""Diagnosis rules on recorded objects, and the three renderings.

OOMKilled and Evicted cannot be produced on the devcluster (no cgroups, no eviction
manager: see its README), so they are tested here on pods and events shaped as a real
kubelet writes them: a terminated container with reason OOMKilled and exit code 137
(restartPolicy Never leaves the pod Failed, and the Job controller then fails the Job with
BackoffLimitExceeded); an evicted pod has phase Failed, reason Evicted and the eviction
manager's message ("The node was low on resource: memory. Threshold quantity: ...,
available: .... Container sandbox was using ..., request is ..., has larger consumption of
memory. "), repeated in a Warning Evicted event from the kubelet.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from sandboxkit.diagnostics import Diagnosis, Finding
from sandboxkit.diagnostics.rules import sandbox_findings

NS = "ci"
JOB_UID = "4f1c0b2e-1111-4a4a-9b9b-000000000001"
POD_UID = "4f1c0b2e-2222-4a4a-9b9b-000000000002"
EVICTION = ("The node was low on resource: memory. Threshold quantity: 100Mi, available: "
            "91236Ki. Container sandbox was using 1843200Ki, request is 512Mi, has larger "
            "consumption of memory. ")


def _job(conditions: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "sandbox-1", "namespace": NS, "uid": JOB_UID},
        "spec": {"activeDeadlineSeconds": 14400,
                 "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": JOB_UID}},
                 "template": {"spec": {"containers": [{"name": "sandbox", "image": "busybox"}]}}},
        "status": {"conditions": conditions or []},
    }


def _pod(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "sandbox-1-x7k2p", "namespace": NS, "uid": POD_UID,
                     "creationTimestamp": "2026-01-05T10:00:00Z"},
        "spec": {"nodeName": "worker-1", "containers": [{
            "name": "sandbox", "image": "busybox",
            "resources": {"requests": {"cpu": "250m", "memory": "512Mi"},
                          "limits": {"cpu": "1", "memory": "2Gi"}}}]},
        "status": status,
    }


def _event(uid: str, kind: str, type_: str, reason: str, message: str) -> dict[str, Any]:
    return {"involvedObject": {"kind": kind, "uid": uid, "name": "sandbox-1"},
            "type": type_, "reason": reason, "message": message,
            "lastTimestamp": "2026-01-05T10:05:00Z", "count": 1}


BACKOFF_FAILED = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                  "message": "Job has reached the specified backoff limit"}


def test_oom_killed_is_the_root_cause_not_the_backoff_limit() -> None:
    pod = _pod({"phase": "Failed", "containerStatuses": [{
        "name": "sandbox", "restartCount": 0, "image": "docker.io/library/busybox:latest",
        "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                                 "startedAt": "2026-01-05T10:00:02Z",
                                 "finishedAt": "2026-01-05T10:04:59Z"}}}]})
    findings = sandbox_findings("sandbox-1", NS, _job([BACKOFF_FAILED]), [pod], [])
    assert [f.reason for f in findings] == ["OOMKilled"]
    assert "exit code 137" in findings[0].evidence and "memory limit 2Gi" in findings[0].evidence
    assert "memory_limit=" in findings[0].fix


def test_evicted_for_memory_quotes_the_kubelet() -> None:
    pod = _pod({"phase": "Failed", "reason": "Evicted", "message": EVICTION})
    events = [_event(POD_UID, "Pod", "Warning", "Evicted", EVICTION)]
    (finding,) = sandbox_findings("sandbox-1", NS, _job([BACKOFF_FAILED]), [pod], events)
    assert finding.reason == "Evicted" and "low on memory" in finding.title
    assert finding.evidence == f"Warning Evicted: {EVICTION}"
    assert "memory_request" in finding.fix


def test_evicted_for_disk_suggests_a_workspace_volume() -> None:
    message = ("The node was low on resource: ephemeral-storage. Threshold quantity: 10Gi, "
               "available: 9Gi. Container sandbox was using 40Gi, request is 0, has larger "
               "consumption of ephemeral-storage. ")
    pod = _pod({"phase": "Failed", "reason": "Evicted", "message": message})
    (finding,) = sandbox_findings("sandbox-1", NS, _job(), [pod], [])
    assert "workspace_pvc" in finding.fix and message in finding.evidence


def test_taint_names_the_taint() -> None:
    message = ("0/3 nodes are available: 3 node(s) had untolerated taint "
               "{dedicated: gpu}. preemption: 0/3 nodes are available: 3 Preemption is not "
               "helpful for scheduling.")
    pod = _pod({"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": message}]})
    pod["spec"].pop("nodeName")
    events = [_event(POD_UID, "Pod", "Warning", "FailedScheduling", message)]
    (finding,) = sandbox_findings("sandbox-1", NS, _job(), [pod], events)
    assert "dedicated: gpu" in finding.title and "kubectl taint nodes" in finding.fix
    assert finding.evidence == f"Warning FailedScheduling: {message}"


def test_deadline_is_reported_once_from_the_pod_or_the_job() -> None:
    message = "Pod was active on the node longer than the specified deadline"
    pod = _pod({"phase": "Failed", "reason": "DeadlineExceeded", "message": message,
                "containerStatuses": [{"name": "sandbox", "state": {"terminated": {
                    "exitCode": 137, "reason": "Error"}}}]})
    (early,) = sandbox_findings("sandbox-1", NS, _job(), [pod], [])
    assert early.reason == "DeadlineExceeded" and message in early.evidence
    failed = {"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
              "message": "Job was active longer than specified deadline"}
    (late,) = sandbox_findings("sandbox-1", NS, _job([failed]), [pod], [])
    assert "activeDeadlineSeconds=14400" in late.title and late.fix == early.fix


def test_pod_security_rejection_says_which_profile() -> None:
    message = ('Error creating: pods "sandbox-1-abcde" is forbidden: violates PodSecurity '
               '"restricted:latest": allowPrivilegeEscalation != false (container "sandbox" '
               'must set securityContext.allowPrivilegeEscalation=false)')
    events = [_event(JOB_UID, "Job", "Warning", "FailedCreate", message)]
    (finding,) = sandbox_findings("sandbox-1", NS, _job(), [], events)
    assert finding.reason == "FailedCreate" and "'restricted:latest'" in finding.title
    assert "security_profile='restricted'" in finding.fix


def test_no_pod_yet_is_information_not_an_error() -> None:
    (finding,) = sandbox_findings("sandbox-1", NS, _job(), [], [])
    assert finding.severity == "info" and Diagnosis("sandbox-1", NS, (finding,)).ok


def test_other_backends_are_diagnosed_from_their_status(tmp_path: Any) -> None:
    from sandboxkit import diagnose
    from sandboxkit.backends.local import LocalSandbox, LocalSandboxWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LocalSandboxWarning)  # warned once per process
        with LocalSandbox(workdir=str(tmp_path)) as sandbox:
            running = diagnose(sandbox)
    assert running.ok and [f.severity for f in running.findings] == ["ok"]
    gone = diagnose(sandbox)
    assert not gone.ok and gone.findings[0].reason == "Missing"


def test_no_api_server_is_a_finding_not_a_traceback(tmp_path: Any) -> None:
    import socket

    from sandboxkit import diagnose
    from sandboxkit.backends.kubernetes.client import connect

    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u, namespace: ci}}]\n")
    conn = connect(str(kubeconfig))
    conn.configuration.retries = 0
    try:
        diagnosis = diagnose("sandbox-1", connection=conn)
    finally:
        conn.close()
    (finding,) = diagnosis.findings
    assert finding.reason == "Unreachable" and f"127.0.0.1:{port}" in finding.title
    assert "kubectl cluster-info" in finding.fix and diagnosis.namespace == "ci"


def test_renderings_escape_and_colour() -> None:
    diagnosis = Diagnosis("sb", NS, (
        Finding("error", "image <b>x</b> cannot be pulled", "line one\nline two", "fix it",
                "ErrImagePull"),
        Finding("ok", "API answers"),
    ))
    assert not diagnosis.ok
    text = diagnosis.to_text()
    assert "[ERROR] image <b>x</b> cannot be pulled  (ErrImagePull)" in text
    assert "  Evidence: line one\n            line two" in text
    html = diagnosis._repr_html_()
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    assert "#c62828" in html and "#2e7d32" in html
    frame = diagnosis.to_frame()
    assert list(frame.columns) == ["severity", "title", "evidence", "fix", "reason"]
    assert list(frame["severity"]) == ["error", "ok"]


def test_unknown_severity_is_refused() -> None:
    with pytest.raises(ValueError, match="severity"):
        Finding("fatal", "x")  # type: ignore[arg-type]
