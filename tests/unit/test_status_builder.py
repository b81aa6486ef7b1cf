"""The status builder against objects shaped like real API responses (kubectl get -o json
of a sandbox Job, its pod and their events on a kind cluster), and kubectl-style ages."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sandboxkit.backends.kubernetes.status import (
    STATUS_EVENTS,
    newest_pod,
    sandbox_status,
)
from sandboxkit.models import kube_age

JOB_UID = "6f0c1e7e-5d3b-4a34-9f0e-0d8a3c1b2a11"
POD_UID = "b0d6b6a4-1f60-4d8e-8d0c-6a9b4f3c2e22"
LABELS = {"app": "ci-fixer-sandbox", "sandboxkit.io/sandbox-id": "sandbox-1a2b3c4d"}
RESOURCES = {"limits": {"cpu": "1", "memory": "2Gi"},
             "requests": {"cpu": "250m", "memory": "512Mi"}}

JOB: dict[str, Any] = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {
        "name": "sandbox-1a2b3c4d", "namespace": "ci", "uid": JOB_UID,
        "resourceVersion": "1042", "creationTimestamp": "2026-11-26T10:00:00Z",
        "labels": LABELS, "annotations": {"sandboxkit.io/owner": "dev@host pid=1"},
    },
    "spec": {
        "backoffLimit": 0, "ttlSecondsAfterFinished": 300, "activeDeadlineSeconds": 14400,
        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": JOB_UID}},
        "template": {
            "metadata": {"labels": LABELS},
            "spec": {
                "serviceAccountName": "ci-fixer-sandbox", "restartPolicy": "Never",
                "containers": [{"name": "sandbox", "image": "python:3.11",
                                "command": ["tail", "-f", "/dev/null"],
                                "resources": RESOURCES}],
            },
        },
    },
    "status": {"active": 1, "ready": 1, "startTime": "2026-11-26T10:00:00Z",
               "uncountedTerminatedPods": {}},
}

RUNNING_POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "sandbox-1a2b3c4d-x7k2p", "namespace": "ci", "uid": POD_UID,
        "creationTimestamp": "2026-11-26T10:00:01Z", "labels": LABELS,
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                             "name": "sandbox-1a2b3c4d", "uid": JOB_UID,
                             "controller": True, "blockOwnerDeletion": True}],
    },
    "spec": {
        "nodeName": "kind-worker", "restartPolicy": "Never",
        "containers": [{"name": "sandbox", "image": "python:3.11",
                        "command": ["tail", "-f", "/dev/null"], "resources": RESOURCES}],
    },
    "status": {
        "phase": "Running", "podIP": "10.244.1.7", "hostIP": "172.18.0.3",
        "qosClass": "Burstable", "startTime": "2026-11-26T10:00:01Z",
        "conditions": [{"type": "Initialized", "status": "True"},
                       {"type": "Ready", "status": "True"},
                       {"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [{
            "name": "sandbox", "image": "docker.io/library/python:3.11",
            "imageID": "docker.io/library/python@sha256:0123", "ready": True,
            "restartCount": 0, "started": True,
            "state": {"running": {"startedAt": "2026-11-26T10:00:09Z"}},
        }],
    },
}


def _pod(**status: Any) -> dict[str, Any]:
    pod = copy.deepcopy(RUNNING_POD)
    pod["status"].update(status)
    return pod


def _waiting(reason: str, message: str) -> dict[str, Any]:
    return _pod(phase="Pending", containerStatuses=[{
        "name": "sandbox", "image": "python:3.11", "imageID": "", "ready": False,
        "restartCount": 0, "started": False,
        "state": {"waiting": {"reason": reason, "message": message}}}])


def _event(reason: str, message: str, when: str, *, kind: str = "Pod",
           type_: str = "Normal", count: int = 1, **extra: Any) -> dict[str, Any]:
    name, uid = (("sandbox-1a2b3c4d-x7k2p", POD_UID) if kind == "Pod"
                 else ("sandbox-1a2b3c4d", JOB_UID))
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{name}.{reason.lower()}", "namespace": "ci",
                     "uid": f"ev-{reason}-{when}", "creationTimestamp": when},
        "involvedObject": {"kind": kind, "namespace": "ci", "name": name, "uid": uid,
                           "apiVersion": "v1" if kind == "Pod" else "batch/v1"},
        "reason": reason, "message": message, "type": type_, "count": count,
        "firstTimestamp": when, "lastTimestamp": when,
        "source": {"component": "kubelet", "host": "kind-worker"}, **extra,
    }


def test_running_sandbox_reads_job_pod_and_container() -> None:
    status = sandbox_status("sandbox-1a2b3c4d", "ci", JOB, RUNNING_POD, [])
    assert status.running and not status.gone and not status.deleting
    assert (status.job_phase, status.job_active, status.job_succeeded, status.job_failed) == (
        "Active", JOB["status"]["active"], 0, 0)
    assert status.pod_name == RUNNING_POD["metadata"]["name"]
    assert (status.pod_phase, status.container_state) == ("Running", "running")
    assert status.node == RUNNING_POD["spec"]["nodeName"]
    assert status.pod_ip == RUNNING_POD["status"]["podIP"]
    assert status.image == RUNNING_POD["status"]["containerStatuses"][0]["image"]
    assert status.requests == RESOURCES["requests"] and status.limits == RESOURCES["limits"]
    assert status.created == JOB["metadata"]["creationTimestamp"]
    assert status.labels == LABELS
    assert status.display_status == "Running"
    assert status.exit_code is None


def test_restarts_are_the_sandbox_containers() -> None:
    pod = _pod()
    pod["status"]["containerStatuses"][0]["restartCount"] = 3
    assert sandbox_status("s", "ci", JOB, pod, []).restarts == 3


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "ErrImagePull", "ContainerCreating"])
def test_waiting_container_shows_its_reason(reason: str) -> None:
    message = 'Back-off pulling image "registry.invalid/nope:1"'
    status = sandbox_status("s", "ci", JOB, _waiting(reason, message), [])
    assert (status.container_state, status.reason, status.message) == ("waiting", reason,
                                                                         message)
    assert status.display_status == reason
    assert not status.running


def test_unscheduled_pod_takes_the_condition_reason_but_reads_pending() -> None:
    message = "0/1 nodes are available: 1 Insufficient memory."
    pod = _pod(phase="Pending", containerStatuses=None, podIP=None, conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": message}])
    del pod["spec"]["nodeName"]
    status = sandbox_status("s", "ci", JOB, pod, [])
    assert (status.reason, status.message) == ("Unschedulable", message)
    assert status.container_state == "" and status.node == "" and status.pod_ip == ""
    assert status.display_status == "Pending"  # as kubectl get pods shows it


def test_oom_killed_container_and_exit_codes() -> None:
    pod = _pod(phase="Failed", containerStatuses=[{
        "name": "sandbox", "image": "python:3.11", "ready": False, "restartCount": 0,
        "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                                 "startedAt": "2026-11-26T10:00:09Z",
                                 "finishedAt": "2026-11-26T10:05:00Z"}}}])
    status = sandbox_status("s", "ci", JOB, pod, [])
    assert (status.container_state, status.reason, status.exit_code) == (
        "terminated", "OOMKilled", 137)
    assert status.display_status == "OOMKilled"
    del pod["status"]["containerStatuses"][0]["state"]["terminated"]["reason"]
    assert sandbox_status("s", "ci", JOB, pod, []).display_status == "ExitCode:137"


def test_evicted_pod_reason_comes_from_the_pod_status() -> None:
    message = "The node was low on resource: memory."
    pod = _pod(phase="Failed", reason="Evicted", message=message)
    status = sandbox_status("s", "ci", JOB, pod, [])
    assert (status.reason, status.message) == ("Evicted", message)


def test_failed_job_without_pod_carries_counts_and_conditions() -> None:
    job = copy.deepcopy(JOB)
    condition = {"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                 "message": "Job was active longer than specified deadline",
                 "lastProbeTime": "2026-11-26T14:00:00Z",
                 "lastTransitionTime": "2026-11-26T14:00:00Z"}
    job["status"] = {"failed": 1, "conditions": [condition]}
    status = sandbox_status("s", "ci", job, None, [])
    assert (status.job_phase, status.job_active, status.job_failed) == ("Failed", 0, 1)
    assert status.job_conditions == (
        {key: condition[key] for key in ("type", "status", "reason", "message")},)
    assert status.display_status == "Failed"
    assert status.pod_name == ""


@pytest.mark.parametrize(("interim", "phase"), [
    ("FailureTarget", "Failed"), ("SuccessCriteriaMet", "Complete")])
def test_interim_job_condition_decides_the_phase(interim: str, phase: str) -> None:
    job = copy.deepcopy(JOB)
    job["status"] = {"active": 1, "conditions": [
        {"type": interim, "status": "True", "reason": "DeadlineExceeded"}]}
    assert sandbox_status("s", "ci", job, None, []).job_phase == phase
    job["status"]["conditions"][0]["status"] = "False"
    assert sandbox_status("s", "ci", job, None, []).job_phase == "Active"


def test_job_without_pod_yet_shows_the_template() -> None:
    status = sandbox_status("s", "ci", JOB, None, [])
    container = JOB["spec"]["template"]["spec"]["containers"][0]
    assert status.image == container["image"]
    assert status.requests == RESOURCES["requests"]
    assert status.display_status == "Pending"


def test_deletion_in_progress_on_job_or_pod() -> None:
    job = copy.deepcopy(JOB)
    job["metadata"]["deletionTimestamp"] = "2026-11-26T11:00:00Z"
    job["metadata"]["finalizers"] = ["foregroundDeletion"]
    status = sandbox_status("s", "ci", job, RUNNING_POD, [])
    assert (status.job_phase, status.deleting, status.display_status) == (
        "Deleting", True, "Terminating")
    pod = copy.deepcopy(RUNNING_POD)
    pod["metadata"]["deletionTimestamp"] = "2026-11-26T11:00:00Z"
    status = sandbox_status("s", "ci", JOB, pod, [])
    assert (status.job_phase, status.deleting, status.display_status) == (
        "Active", True, "Terminating")


def test_missing_job_is_gone() -> None:
    status = sandbox_status("s", "ci", None, None, [])
    assert status.gone and status.job_phase == "Missing" and status.display_status == "Gone"
    assert status.events == ()


def test_events_are_summarised_oldest_first_and_trimmed() -> None:
    base = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
    events = [_event(f"R{i:02d}", f"message {i}",
                     (base + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ"))
              for i in range(STATUS_EVENTS + 5)]
    status = sandbox_status("s", "ci", JOB, RUNNING_POD, list(reversed(events)))
    kept = events[-STATUS_EVENTS:]
    assert [e["reason"] for e in status.events] == [e["reason"] for e in kept]
    first = status.events[0]
    assert first == {"type": "Normal", "reason": kept[0]["reason"],
                     "message": kept[0]["message"],
                     "object": f"Pod/{RUNNING_POD['metadata']['name']}", "count": 1,
                     "time": kept[0]["lastTimestamp"]}


def test_event_without_last_timestamp_uses_event_time() -> None:
    # Events written through events.k8s.io/v1 (the scheduler's) have only eventTime.
    event = _event("FailedScheduling", "0/1 nodes are available", "2026-11-26T10:00:00Z",
                   type_="Warning", count=4)
    event.update(lastTimestamp=None, firstTimestamp=None,
                 eventTime="2026-11-26T10:00:03.120000Z")
    (summary,) = sandbox_status("s", "ci", JOB, None, [event]).events
    assert summary["time"] == event["eventTime"]
    assert (summary["type"], summary["count"]) == ("Warning", 4)


def test_newest_pod_is_the_latest_created() -> None:
    older, newer = copy.deepcopy(RUNNING_POD), copy.deepcopy(RUNNING_POD)
    newer["metadata"].update(name="sandbox-1a2b3c4d-zz9qq",
                             creationTimestamp="2026-11-26T10:03:00Z")
    assert newest_pod([newer, older]) is newer
    assert newest_pod([]) is None


# The table of k8s.io/apimachinery/pkg/util/duration's TestHumanDuration, which kubectl's
# AGE column uses.
@pytest.mark.parametrize(("elapsed", "expected"), [
    (timedelta(seconds=1), "1s"),
    (timedelta(seconds=70), "70s"),
    (timedelta(seconds=190), "3m10s"),
    (timedelta(minutes=70), "70m"),
    (timedelta(hours=47), "47h"),
    (timedelta(hours=49), "2d1h"),
    (timedelta(hours=8 * 24 + 2), "8d"),
    (timedelta(hours=367 * 24), "367d"),
    (timedelta(hours=365 * 2 * 24 + 25), "2y1d"),
    (timedelta(hours=365 * 8 * 24 + 2), "8y"),
])
def test_kube_age_matches_kubectl(elapsed: timedelta, expected: str) -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert kube_age((now - elapsed).isoformat().replace("+00:00", "Z"), now) == expected


def test_kube_age_of_future_and_missing_timestamps() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert kube_age((now + timedelta(seconds=10)).isoformat(), now) == "<invalid>"
    assert kube_age("", now) == "<unknown>"
