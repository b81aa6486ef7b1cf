"""Fidelity tests that drive the cluster only through the official client and kubectl: Jobs.

A sandbox is a Job whose pod idles; these tests check what sandboxkit relies on -- the pod
the Job controller makes, its path to Running as a watch sees it, the events and reasons a
failure leaves behind, and Foreground deletion -- as documented Kubernetes behaviour, so
they pass against the devcluster and against a real cluster alike.
"""

from __future__ import annotations

import re
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from workload_support import (
    SANDBOX_LABELS,
    job_condition,
    job_manifest,
    pod_manifest,
    wait_for_event,
    wait_gone,
    wait_job_finished,
    wait_pod_running,
    watch_until,
)

HOLD_FINALIZER = "sandboxkit.test/hold"


def _owned_by(job: Any) -> str:
    return f"batch.kubernetes.io/controller-uid={job.metadata.uid}"


def test_sandbox_job_pod_reaches_running_seen_by_watch(
    core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    created = batch.create_namespaced_job(namespace, job_manifest("sandbox"))
    uid = created.metadata.uid
    assert created.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    assert created.spec.template.metadata.labels["job-name"] == "sandbox"

    phases: list[str] = []

    def running(kind: str, pod: Any) -> bool:
        phases.append(f"{kind}:{pod.status.phase}")
        return pod.status.phase == "Running"

    # Resource versions are cluster-wide: a pod watch from the Job's create version sees
    # the pod the Job controller makes afterwards, from its ADDED event on.
    _, pod = watch_until(core.list_namespaced_pod, running, namespace,
                         resource_version=created.metadata.resource_version,
                         label_selector="app=ci-fixer-sandbox")
    assert phases[0] == "ADDED:Pending"

    meta = pod.metadata
    assert meta.name.startswith("sandbox-")
    assert meta.labels["app"] == "ci-fixer-sandbox"
    for key, value in (("job-name", "sandbox"), ("batch.kubernetes.io/job-name", "sandbox"),
                       ("controller-uid", uid), ("batch.kubernetes.io/controller-uid", uid)):
        assert meta.labels[key] == value
    (owner,) = meta.owner_references
    assert (owner.api_version, owner.kind, owner.name, owner.uid) == (
        "batch/v1", "Job", "sandbox", uid)
    assert owner.controller is True and owner.block_owner_deletion is True
    assert pod.spec.node_name
    (status,) = pod.status.container_statuses
    assert status.name == "main" and status.state.running is not None

    _, job = watch_until(batch.list_namespaced_job, lambda _, j: j.status.active == 1,
                         namespace, field_selector="metadata.name=sandbox")
    assert job.status.start_time is not None
    assert job.status.succeeded is None and job.status.failed is None
    assert job_condition(job, "Complete") is None and job_condition(job, "Failed") is None
    listed = core.list_namespaced_pod(namespace, label_selector="job-name=sandbox").items
    assert [p.metadata.name for p in listed] == [meta.name]


def test_kubectl_describe_pod_shows_lifecycle_events(
    core: client.CoreV1Api, namespace: str, kubectl: Any
) -> None:
    core.create_namespaced_pod(namespace, pod_manifest("described"))
    wait_pod_running(core, namespace, "described")
    wait_for_event(core, namespace, "described", lambda ev: ev.reason == "Started")
    result = kubectl("describe", "pod", "described", "-n", namespace)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"^Status:\s+Running$", out, re.M), out
    assert re.search(r"^Labels:\s+app=ci-fixer-sandbox$", out, re.M), out
    events = out[out.index("\nEvents:"):]
    for reason, source in (("Scheduled", "default-scheduler"), ("Pulled", "kubelet"),
                           ("Created", "kubelet"), ("Started", "kubelet")):
        assert re.search(rf"^\s+Normal\s+{reason}\s+.*\s{source}\s", events, re.M), events
    assert re.search(r"Successfully assigned " + re.escape(f"{namespace}/described") + " to ",
                     events), events
    assert "Started container main" in events


def test_unknown_image_reports_pull_failure(core: client.CoreV1Api, namespace: str) -> None:
    image = "registry.invalid/sandboxkit/no-such-image:0.0.1"
    body = pod_manifest("badimage")
    body["spec"]["containers"][0]["image"] = image
    core.create_namespaced_pod(namespace, body)

    def pull_failed(_: str, pod: Any) -> bool:
        statuses = pod.status.container_statuses or []
        waiting = statuses[0].state.waiting if statuses else None
        return waiting is not None and waiting.reason in ("ErrImagePull", "ImagePullBackOff")

    _, pod = watch_until(core.list_namespaced_pod, pull_failed, namespace,
                         field_selector="metadata.name=badimage")
    assert pod.status.phase == "Pending"
    assert pod.status.container_statuses[0].ready is False
    failed = wait_for_event(core, namespace, "badimage",
                            lambda ev: ev.reason == "Failed" and "ErrImagePull" in ev.message)
    assert failed.type == "Warning"
    assert failed.message == "Error: ErrImagePull"
    assert failed.involved_object.kind == "Pod"
    pulled = wait_for_event(core, namespace, "badimage",
                            lambda ev: ev.reason == "Failed" and image in ev.message)
    assert pulled.message.startswith(f'Failed to pull image "{image}": ')


def test_oversized_request_is_unschedulable(core: client.CoreV1Api, namespace: str) -> None:
    body = pod_manifest("huge")
    body["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1000"}}
    core.create_namespaced_pod(namespace, body)
    # the node count and other nodes' reasons differ between clusters; this part does not
    portable = re.compile(r"^0/\d+ nodes are available: (.+, )?\d+ Insufficient cpu[,.] ")

    def unschedulable(_: str, pod: Any) -> bool:
        return any(c.type == "PodScheduled" and c.status == "False"
                   for c in pod.status.conditions or [])

    _, pod = watch_until(core.list_namespaced_pod, unschedulable, namespace,
                         field_selector="metadata.name=huge")
    (cond,) = [c for c in pod.status.conditions if c.type == "PodScheduled"]
    assert cond.reason == "Unschedulable"
    assert portable.match(cond.message), cond.message
    assert pod.status.phase == "Pending" and not pod.spec.node_name
    event = wait_for_event(core, namespace, "huge", lambda ev: ev.reason == "FailedScheduling")
    assert event.type == "Warning"
    assert portable.match(event.message), event.message


def test_quota_rejection_is_a_failed_create_event(
    core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    core.create_namespaced_resource_quota(namespace, {
        "metadata": {"name": "tight"}, "spec": {"hard": {"requests.cpu": "100m"}}})
    # Admission trusts a quota only once the quota controller has published its status.
    watch_until(core.list_namespaced_resource_quota,
                lambda _, q: bool(q.status and q.status.hard), namespace,
                field_selector="metadata.name=tight")
    body = job_manifest("greedy")
    body["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "250m"}, "limits": {"cpu": "250m"}}
    batch.create_namespaced_job(namespace, body)
    event = wait_for_event(core, namespace, "greedy", lambda ev: ev.reason == "FailedCreate")
    assert event.type == "Warning" and event.involved_object.kind == "Job"
    assert re.fullmatch(
        r'Error creating: pods "greedy-[a-z0-9]+" is forbidden: exceeded quota: tight, '
        r"requested: requests\.cpu=250m, used: requests\.cpu=0, limited: requests\.cpu=100m",
        event.message), event.message
    assert core.list_namespaced_pod(namespace, label_selector="job-name=greedy").items == []


def test_missing_service_account_is_a_failed_create_event(
    core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    batch.create_namespaced_job(
        namespace, job_manifest("nosa", pod={"serviceAccountName": "x"}))
    event = wait_for_event(core, namespace, "nosa", lambda ev: ev.reason == "FailedCreate")
    assert event.type == "Warning" and event.involved_object.kind == "Job"
    assert event.message.startswith('Error creating: pods "nosa-')
    assert event.message.endswith(
        f'is forbidden: error looking up service account {namespace}/x: '
        'serviceaccount "x" not found')


def test_job_failing_command_exceeds_backoff_limit(
    core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    batch.create_namespaced_job(namespace, job_manifest("fails", ["sh", "-c", "exit 1"]))
    job = wait_job_finished(batch, namespace, "fails")
    failed = job_condition(job, "Failed")
    assert failed is not None, job.status
    assert (failed.reason, failed.message) == (
        "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    assert job.status.failed == 1 and not job.status.succeeded and not job.status.active
    assert job_condition(job, "Complete") is None
    (pod,) = core.list_namespaced_pod(namespace, label_selector="job-name=fails").items
    assert pod.status.phase == "Failed"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (1, "Error")
    wait_for_event(core, namespace, "fails",
                   lambda ev: ev.reason == "BackoffLimitExceeded" and ev.type == "Warning")


def test_job_active_deadline_exceeded(
    core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    batch.create_namespaced_job(namespace, job_manifest("deadline", activeDeadlineSeconds=1))
    job = wait_job_finished(batch, namespace, "deadline")
    failed = job_condition(job, "Failed")
    assert failed is not None, job.status
    assert (failed.reason, failed.message) == (
        "DeadlineExceeded", "Job was active longer than specified deadline")
    assert not job.status.active and not job.status.succeeded
    event = wait_for_event(core, namespace, "deadline",
                           lambda ev: ev.reason == "DeadlineExceeded")
    assert event.type == "Warning"
    assert event.message == "Job was active longer than specified deadline"
    # the Job controller deleted the running pod when the deadline passed
    assert all(p.metadata.deletion_timestamp or p.status.phase in ("Failed", "Succeeded")
               for p in core.list_namespaced_pod(namespace,
                                                 label_selector="job-name=deadline").items)


def _set_finalizers(core: client.CoreV1Api, namespace: str, name: str,
                    change: Any) -> None:
    """Change a pod's finalizers with optimistic concurrency (the Job controller edits them
    too): a merge patch carrying the resourceVersion it read fails with 409 if stale."""
    for _ in range(10):
        meta = core.read_namespaced_pod(name, namespace).metadata
        patch = {"metadata": {"resourceVersion": meta.resource_version,
                              "finalizers": change(list(meta.finalizers or []))}}
        try:
            core.patch_namespaced_pod(name, namespace, patch,
                                      _content_type="application/merge-patch+json")
            return
        except ApiException as exc:
            if exc.status != 409:
                raise
    raise AssertionError(f"could not update the finalizers of pod {name}")


def test_foreground_deletion_removes_the_pod_before_the_job(
    core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    created = batch.create_namespaced_job(namespace, job_manifest("fg"))
    _, pod = watch_until(core.list_namespaced_pod, lambda _, p: p.status.phase == "Running",
                         namespace, label_selector=_owned_by(created))
    name = pod.metadata.name
    # Our own finalizer holds the pod in storage after its containers stop, so the test
    # can look at the Job while its dependent is still there.
    _set_finalizers(core, namespace, name, lambda f: [*f, HOLD_FINALIZER])
    try:
        # The Job outlives the call: the response is the Job (not a Status), marked for
        # deletion and waiting for its dependents.
        response = batch.delete_namespaced_job(
            "fg", namespace, body=client.V1DeleteOptions(propagation_policy="Foreground"))
        assert isinstance(response, dict) and response["kind"] == "Job", response
        assert response["metadata"]["deletionTimestamp"]
        assert response["metadata"]["finalizers"] == ["foregroundDeletion"]

        _, deleting = watch_until(
            core.list_namespaced_pod, lambda _, p: p.metadata.deletion_timestamp is not None,
            namespace, field_selector=f"metadata.name={name}")
        assert HOLD_FINALIZER in deleting.metadata.finalizers
        job = batch.read_namespaced_job("fg", namespace)  # still there: its pod is
        assert job.metadata.deletion_timestamp is not None
        assert job.metadata.finalizers == ["foregroundDeletion"]
    finally:
        _set_finalizers(core, namespace, name,
                        lambda f: [x for x in f if x != HOLD_FINALIZER])
    wait_gone(core.list_namespaced_pod, namespace, name)
    wait_gone(batch.list_namespaced_job, namespace, "fg")
    assert core.list_namespaced_pod(namespace, label_selector=_owned_by(created)).items == []


def test_sandbox_labels_select_the_job(batch: client.BatchV1Api, namespace: str) -> None:
    batch.create_namespaced_job(namespace, job_manifest("labelled"))
    batch.create_namespaced_job(namespace, {
        **job_manifest("other"), "metadata": {"name": "other", "labels": {"app": "else"}}})
    selector = ",".join(f"{k}={v}" for k, v in SANDBOX_LABELS.items())
    listed = batch.list_namespaced_job(namespace, label_selector=selector).items
    assert [j.metadata.name for j in listed] == ["labelled"]
