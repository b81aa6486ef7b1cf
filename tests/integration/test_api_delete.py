"""API fidelity: cascading deletion of a Job that owns a pod.

Background removes the Job at once and its pod after; Foreground keeps the Job (with a
deletionTimestamp and the ``foregroundDeletion`` finalizer) until the pod has left
storage; Orphan, and the batch/v1 default when the client names no policy, leaves the pod
running without its ownerReference.

To observe the Foreground window deterministically the pod is held by a test finalizer,
so the Job must wait for the test, not for a race with the kubelet.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from api_support import RunningJob, held_by_finalizer, start_job, status_of
from kubernetes import client
from kubernetes.client.rest import ApiException
from workload_support import wait_gone, watch_until

JOB_WARNING = ("child pods are preserved by default when jobs are deleted; set "
               "propagationPolicy=Background to remove them or set propagationPolicy=Orphan to "
               "suppress this warning")


def _raw_delete(batch: client.BatchV1Api, job: RunningJob, namespace: str,
                **options: Any) -> tuple[int, dict[str, str], dict[str, Any]]:
    response = batch.delete_namespaced_job(job.name, namespace, _preload_content=False,
                                           **options)
    try:
        return response.status, dict(response.headers), json.loads(response.data)
    finally:
        response.release_conn()


def _assert_orphaned(core: client.CoreV1Api, batch: client.BatchV1Api, job: RunningJob,
                     namespace: str) -> None:
    """The Job leaves storage only after its pod lost the reference to it."""
    wait_gone(batch.list_namespaced_job, namespace, job.name)
    pod = core.read_namespaced_pod(job.pod.metadata.name, namespace)
    assert pod.metadata.deletion_timestamp is None
    assert not [ref for ref in pod.metadata.owner_references or [] if ref.uid == job.uid]


def test_background_deletes_job_then_pod(api_client: Any, namespace: str) -> None:
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    job = start_job(api_client, namespace, "bg")
    owner = job.pod.metadata.owner_references
    assert [(r.kind, r.name, r.uid, r.controller, r.block_owner_deletion) for r in owner] == [
        ("Job", job.name, job.uid, True, True)]

    code, headers, body = _raw_delete(batch, job, namespace, propagation_policy="Background")
    assert code == 200
    assert "Warning" not in headers
    assert (body["kind"], body["status"]) == ("Status", "Success")
    assert body["details"] == {"name": job.name, "group": "batch", "kind": "jobs",
                               "uid": job.uid}
    with pytest.raises(ApiException) as gone:
        batch.read_namespaced_job(job.name, namespace)
    assert status_of(gone.value)["reason"] == "NotFound"
    wait_gone(core.list_namespaced_pod, namespace, job.pod.metadata.name)


def test_foreground_keeps_job_until_pod_is_gone(api_client: Any, namespace: str) -> None:
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    job = start_job(api_client, namespace, "fg")
    pod = job.pod.metadata.name
    with held_by_finalizer(core, namespace, pod):
        code, _, body = _raw_delete(batch, job, namespace, propagation_policy="Foreground")
        assert code == 200
        assert body["kind"] == "Job"
        assert body["metadata"]["deletionTimestamp"]
        assert "foregroundDeletion" in body["metadata"]["finalizers"]

        # The garbage collector deletes the pod, which the test finalizer keeps in storage...
        watch_until(core.list_namespaced_pod,
                    lambda _, p: p.metadata.deletion_timestamp is not None,
                    namespace, field_selector=f"metadata.name={pod}")
        # ...and as long as it is there, so is the Job.
        waiting = batch.read_namespaced_job(job.name, namespace)
        assert waiting.metadata.deletion_timestamp is not None
        assert "foregroundDeletion" in waiting.metadata.finalizers
    wait_gone(core.list_namespaced_pod, namespace, pod)
    wait_gone(batch.list_namespaced_job, namespace, job.name)


def test_orphan_leaves_pod_without_owner(api_client: Any, namespace: str) -> None:
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    job = start_job(api_client, namespace, "orphan")
    code, headers, body = _raw_delete(batch, job, namespace, propagation_policy="Orphan")
    assert code == 200
    assert "Warning" not in headers
    assert body["kind"] == "Job"
    assert "orphan" in body["metadata"]["finalizers"]
    _assert_orphaned(core, batch, job, namespace)


def test_client_default_for_batch_v1_job_is_orphan_with_warning(api_client: Any,
                                                                 namespace: str) -> None:
    """batch/v1 keeps the legacy OrphanDependents default (and warns since 1.27)."""
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    job = start_job(api_client, namespace, "default")
    code, headers, body = _raw_delete(batch, job, namespace)
    assert code == 200
    assert headers.get("Warning") == f'299 - "{JOB_WARNING}"'
    assert body["kind"] == "Job"
    assert body["metadata"]["finalizers"] == ["orphan"]
    _assert_orphaned(core, batch, job, namespace)


@pytest.mark.kubectl
def test_kubectl_delete_job_cascades_in_background(api_client: Any, kubectl: Any,
                                                   namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    job = start_job(api_client, namespace, "kubectl")
    out = kubectl("delete", "job", job.name, "-n", namespace, "--wait=false")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f'job.batch "{job.name}" deleted'
    assert "Warning" not in out.stderr
    wait_gone(core.list_namespaced_pod, namespace, job.pod.metadata.name)

    orphaned = start_job(api_client, namespace, "kubectl-orphan")
    out = kubectl("delete", "job", orphaned.name, "-n", namespace, "--cascade=orphan")
    assert out.returncode == 0, out.stderr
    _assert_orphaned(core, client.BatchV1Api(api_client), orphaned, namespace)


def test_pod_delete_returns_the_pod_with_its_grace_period(api_client: Any,
                                                          namespace: str) -> None:
    """A pod on a node is deleted gracefully: the reply is the pod, marked for deletion."""
    core = client.CoreV1Api(api_client)
    job = start_job(api_client, namespace, "grace")
    pod = job.pod.metadata.name
    watch_until(core.list_namespaced_pod, lambda _, p: bool(p.spec.node_name), namespace,
              field_selector=f"metadata.name={pod}")
    response = core.delete_namespaced_pod(pod, namespace, _preload_content=False)
    try:
        assert response.status == 200
        body = json.loads(response.data)
    finally:
        response.release_conn()
    assert body["kind"] == "Pod"
    assert body["metadata"]["deletionTimestamp"]
    assert body["metadata"]["deletionGracePeriodSeconds"] == 1
    wait_gone(core.list_namespaced_pod, namespace, pod)
