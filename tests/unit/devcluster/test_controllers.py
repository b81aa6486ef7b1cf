"""Controllers against the real in-process API: Job, scheduler, GC, TTL, namespace, quota."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from sandboxkit.devcluster import admission, clock
from sandboxkit.devcluster.api import Api
from sandboxkit.devcluster.controllers import (
    GarbageCollector,
    JobController,
    NamespaceController,
    NodeOptions,
    ResourceQuotaController,
    Scheduler,
    TTLAfterFinishedController,
    WorkQueue,
)
from sandboxkit.devcluster.controllers.base import Controller
from sandboxkit.devcluster.errors import ApiError
from sandboxkit.devcluster.resources import require

pytestmark = pytest.mark.unit

PODS = require("", "v1", "pods")
JOBS = require("batch", "v1", "jobs")
NAMESPACES = require("", "v1", "namespaces")
SERVICE_ACCOUNTS = require("", "v1", "serviceaccounts")
QUOTAS = require("", "v1", "resourcequotas")
CONFIG_MAPS = require("", "v1", "configmaps")
NODES = require("", "v1", "nodes")
EVENTS = require("", "v1", "events")


def make_api() -> Api:
    """The real in-process API with the cluster's admission plugins and ``default`` ready."""
    api = Api()
    api.admission.extend(admission.default_plugins())
    api.create(NAMESPACES, {"metadata": {"name": "default"}})
    api.create(SERVICE_ACCOUNTS, {"metadata": {"name": "default", "namespace": "default"}})
    return api


def events(api: Api) -> list[tuple[str, str, str, str]]:
    """(object name, type, reason, message) of every Event, in the order last recorded."""
    items = sorted(api.list(EVENTS)[0], key=lambda e: int(e["metadata"]["resourceVersion"]))
    return [(e["involvedObject"]["name"], e["type"], e["reason"], e["message"]) for e in items]


def set_phase(api: Api, namespace: str, name: str, phase: str) -> None:
    """Report a pod phase through pods/status, as the kubelet does."""
    pod = api.get(PODS, namespace, name)
    pod["status"]["phase"] = phase
    api.update(PODS, pod, subresource="status")


def kubelet_finish(api: Api, namespace: str, name: str) -> None:
    """What the kubelet does once a deleted pod's containers have stopped."""
    api.delete(PODS, namespace, name, grace_period_seconds=0)


def job(name: str = "job1", **spec: Any) -> dict[str, Any]:
    template_spec = {"restartPolicy": "Never",
                     "containers": [{"name": "main", "image": "busybox"}]}
    template_spec.update(spec.pop("pod", {}))
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"backoffLimit": 6, "template": {"metadata": {"labels": {"app": "x"}},
                                                  "spec": template_spec}, **spec},
    }


def test_get_or_none_found_missing_and_other_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    api = make_api()
    found = api.get_or_none(SERVICE_ACCOUNTS, "default", "default")
    assert found is not None and found["metadata"]["name"] == "default"
    assert api.get_or_none(SERVICE_ACCOUNTS, "default", "missing") is None
    assert api.get_or_none(NAMESPACES, None, "missing") is None

    def refuse(*_: Any) -> dict[str, Any]:
        raise ApiError(500, "InternalError", "Internal error occurred: boom")

    monkeypatch.setattr(api, "get", refuse)
    with pytest.raises(ApiError) as info:
        api.get_or_none(SERVICE_ACCOUNTS, "default", "default")
    assert info.value.code == 500


async def settle(*controllers: Controller, rounds: int = 50) -> None:
    """Let the workers drain their queues (timers excluded)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
        if all(len(c.queue) == 0 for c in controllers):
            await asyncio.sleep(0)
            if all(len(c.queue) == 0 for c in controllers):
                return


def running(test: Callable[[Api], Awaitable[None]]) -> Callable[[], None]:
    def wrapper() -> None:
        asyncio.run(test(make_api()))

    wrapper.__name__ = test.__name__
    return wrapper


def fast(controller: Controller) -> Controller:
    controller.queue = WorkQueue(0.001, 0.01)
    return controller


def job_pods(api: Api) -> list[dict[str, Any]]:
    return api.list(PODS, "default")[0]


# -- Job controller ----------------------------------------------------------------------------
@running
async def test_job_creates_a_labelled_owned_pod(api: Api) -> None:
    ctrl = JobController(api)
    ctrl.start()
    created = api.create(JOBS, job())
    await settle(ctrl)
    (pod,) = job_pods(api)
    meta, uid = pod["metadata"], created["metadata"]["uid"]
    assert meta["generateName"] == "job1-"
    assert meta["labels"] == {
        "app": "x", "batch.kubernetes.io/job-name": "job1", "job-name": "job1",
        "batch.kubernetes.io/controller-uid": uid, "controller-uid": uid}
    assert meta["finalizers"] == ["batch.kubernetes.io/job-tracking"]
    assert meta["ownerReferences"] == [{
        "apiVersion": "batch/v1", "kind": "Job", "name": "job1", "uid": uid,
        "controller": True, "blockOwnerDeletion": True}]
    assert ("job1", "Normal", "SuccessfulCreate", f"Created pod: {meta['name']}") in events(api)
    status = api.get(JOBS, "default", "job1")["status"]
    assert status["active"] == 1 and status["ready"] == 0 and status["terminating"] == 0
    assert status["uncountedTerminatedPods"] == {} and "startTime" in status
    await ctrl.stop()


@running
async def test_failed_pod_with_backoff_limit_zero_fails_the_job(api: Api) -> None:
    ctrl = JobController(api)
    ctrl.start()
    api.create(JOBS, job(backoffLimit=0))
    await settle(ctrl)
    (pod,) = job_pods(api)
    set_phase(api, "default", pod["metadata"]["name"], "Failed")
    await settle(ctrl)
    status = api.get(JOBS, "default", "job1")["status"]
    assert [(c["type"], c["reason"], c["message"]) for c in status["conditions"]] == [
        ("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
        ("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
    ]
    assert status["failed"] == 1 and "active" not in status
    (pod,) = job_pods(api)  # no replacement, and the finalizer is released
    assert "finalizers" not in pod["metadata"] or not pod["metadata"]["finalizers"]
    assert ("job1", "Warning", "BackoffLimitExceeded",
            "Job has reached the specified backoff limit") in events(api)
    await ctrl.stop()


@running
async def test_succeeded_pod_completes_the_job(api: Api) -> None:
    ctrl = JobController(api)
    ctrl.start()
    api.create(JOBS, job())
    await settle(ctrl)
    (pod,) = job_pods(api)
    set_phase(api, "default", pod["metadata"]["name"], "Succeeded")
    await settle(ctrl)
    status = api.get(JOBS, "default", "job1")["status"]
    assert [c["type"] for c in status["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert status["succeeded"] == 1 and status["completionTime"]
    assert ("job1", "Normal", "Completed", "Job completed") in events(api)
    await ctrl.stop()


@running
async def test_active_deadline_deletes_pods_then_fails(api: Api) -> None:
    ctrl = JobController(api)
    ctrl.start()
    api.create(JOBS, job(activeDeadlineSeconds=1))
    await settle(ctrl)
    (pod,) = job_pods(api)
    name = pod["metadata"]["name"]
    api.bind("default", name, "node")
    set_phase(api, "default", name, "Running")
    await asyncio.sleep(1.1)  # the deadline timer fires; no polling in between
    await settle(ctrl)
    status = api.get(JOBS, "default", "job1")["status"]
    assert [c["type"] for c in status["conditions"]] == ["FailureTarget"]
    assert status["terminating"] == 1
    assert ("job1", "Normal", "SuccessfulDelete", f"Deleted pod: {name}") in events(api)
    kubelet_finish(api, "default", name)  # the pod is gone only now
    await settle(ctrl)
    status = api.get(JOBS, "default", "job1")["status"]
    assert [(c["type"], c["reason"]) for c in status["conditions"]] == [
        ("FailureTarget", "DeadlineExceeded"), ("Failed", "DeadlineExceeded")]
    assert status["failed"] == 1 and status["terminating"] == 0
    assert ("job1", "Warning", "DeadlineExceeded",
            "Job was active longer than specified deadline") in events(api)
    await ctrl.stop()


@running
async def test_rejected_pod_creation_is_reported_and_retried(api: Api) -> None:
    api.admission = admission.default_plugins()
    ctrl = fast(JobController(api))
    ctrl.start()
    api.create(JOBS, job(pod={"serviceAccountName": "foo"}))
    await asyncio.sleep(0.05)
    message = ('Error creating: pods "job1-" is forbidden: error looking up service account '
               'default/foo: serviceaccount "foo" not found')
    (failure,) = [e for e in api.list(EVENTS)[0] if e["reason"] == "FailedCreate"]
    assert (failure["type"], failure["message"]) == ("Warning", message)
    assert failure["count"] > 1  # retried with back-off; the recorder folds the repeats
    api.create(SERVICE_ACCOUNTS, {"metadata": {"name": "foo", "namespace": "default"}})
    await asyncio.sleep(0.05)
    assert len(job_pods(api)) == 1
    await ctrl.stop()


@running
async def test_quota_rejection_message(api: Api) -> None:
    api.admission = admission.default_plugins()
    api.create(QUOTAS, {"metadata": {"name": "q", "namespace": "default"},
                        "spec": {"hard": {"pods": "0"}}})
    ctrl = JobController(api)
    ctrl.start()
    api.create(JOBS, job())
    await settle(ctrl)
    event = next(e for e in events(api) if e[2] == "FailedCreate")
    assert event[3].startswith('Error creating: pods "job1-')
    assert event[3].endswith('" is forbidden: exceeded quota: q, requested: pods=1, '
                             "used: pods=0, limited: pods=0")
    await ctrl.stop()


# -- scheduler ---------------------------------------------------------------------------------
def bare_pod(name: str, cpu: str | None = None, **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": "busybox"}
    if cpu:
        container["resources"] = {"requests": {"cpu": cpu}}
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [container], **spec}}


@running
async def test_scheduler_binds_and_reports_insufficient_cpu(api: Api) -> None:
    sched = Scheduler(api, NodeOptions(cpu="2"))
    sched.start()
    assert api.get(NODES, None, "devcluster-node")["status"]["allocatable"]["cpu"] == "2"
    api.create(PODS, bare_pod("big", "1500m"))
    await settle(sched)
    big = api.get(PODS, "default", "big")
    assert big["spec"]["nodeName"] == "devcluster-node"
    assert big["status"]["conditions"][0]["type"] == "PodScheduled"
    assert ("big", "Normal", "Scheduled",
            "Successfully assigned default/big to devcluster-node") in events(api)
    api.create(PODS, bare_pod("second", "1"))
    await settle(sched)
    message = ("0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are "
               "available: 1 No preemption victims found for incoming pod.")
    second = api.get(PODS, "default", "second")
    assert "nodeName" not in second["spec"]
    (cond,) = second["status"]["conditions"]
    assert (cond["status"], cond["reason"], cond["message"]) == ("False", "Unschedulable",
                                                                 message)
    assert ("second", "Warning", "FailedScheduling", message) in events(api)
    set_phase(api, "default", "big", "Succeeded")  # frees the cpu: the pod is retried
    await settle(sched)
    assert api.get(PODS, "default", "second")["spec"]["nodeName"] == "devcluster-node"
    await sched.stop()


@running
async def test_scheduler_node_selector_mismatch(api: Api) -> None:
    sched = Scheduler(api)
    sched.start()
    api.create(PODS, bare_pod("picky", nodeSelector={"disk": "ssd"}))
    await settle(sched)
    assert events(api)[-1][3] == (
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. "
        "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.")
    await sched.stop()


# -- garbage collector -------------------------------------------------------------------------
def owned(name: str, owner: dict[str, Any], block: bool = True) -> dict[str, Any]:
    pod = bare_pod(name, nodeName="node")
    pod["metadata"]["ownerReferences"] = [{
        "apiVersion": "batch/v1", "kind": "Job", "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": block}]
    return pod


@running
async def test_foreground_deletion_removes_dependents_first(api: Api) -> None:
    gc = GarbageCollector(api)
    gc.start()
    owner = api.create(JOBS, job())
    api.create(PODS, owned("p1", owner))
    api.delete(JOBS, "default", "job1", propagation_policy="Foreground")
    await settle(gc)
    assert "deletionTimestamp" in api.get(PODS, "default", "p1")["metadata"]
    assert api.get(JOBS, "default", "job1")["metadata"]["finalizers"] == ["foregroundDeletion"]
    kubelet_finish(api, "default", "p1")
    await settle(gc)
    assert api.list(JOBS)[0] == []
    await gc.stop()


@running
async def test_background_and_orphan_propagation(api: Api) -> None:
    gc = GarbageCollector(api)
    gc.start()
    first = api.create(JOBS, job("first"))
    api.create(PODS, owned("a", first))
    api.delete(JOBS, "default", "first", propagation_policy="Background")  # gone at once
    await settle(gc)
    assert "deletionTimestamp" in api.get(PODS, "default", "a")["metadata"]
    second = api.create(JOBS, job("second"))
    api.create(PODS, owned("b", second))
    api.delete(JOBS, "default", "second", propagation_policy="Orphan")
    await settle(gc)
    assert api.list(JOBS)[0] == []
    b = api.get(PODS, "default", "b")
    assert "ownerReferences" not in b["metadata"] and "deletionTimestamp" not in b["metadata"]
    await gc.stop()


@running
async def test_dependents_of_missing_owners_are_collected_at_start(api: Api) -> None:
    api.create(PODS, owned("stray", {"metadata": {"name": "gone", "uid": "nope"}}))
    gc = GarbageCollector(api)
    gc.start()
    await settle(gc)
    assert "deletionTimestamp" in api.get(PODS, "default", "stray")["metadata"]
    await gc.stop()


# -- TTL, namespaces, quota status -------------------------------------------------------------
@running
async def test_ttl_deletes_finished_job_in_the_foreground(api: Api) -> None:
    ttl = TTLAfterFinishedController(api)
    ttl.start()
    api.create(JOBS, job(ttlSecondsAfterFinished=2))
    now = clock.now()
    if now.microsecond > 500_000:  # conditions have second precision: start early in one
        await asyncio.sleep(1 - now.microsecond / 1e6)
    finished_at = clock.now().replace(microsecond=0) - timedelta(seconds=1)
    finished = api.get(JOBS, "default", "job1")
    finished["status"] = {"conditions": [{"type": "Complete", "status": "True",
                                          "lastTransitionTime": clock.rfc3339(finished_at)}]}
    api.update(JOBS, finished, subresource="status")
    await settle(ttl)  # due in 0.5-1s: a timer, not a deletion yet
    assert "deletionTimestamp" not in api.get(JOBS, "default", "job1")["metadata"]
    await asyncio.sleep(1.05)
    await settle(ttl)
    meta = api.get(JOBS, "default", "job1")["metadata"]
    assert meta["finalizers"] == ["foregroundDeletion"] and "deletionTimestamp" in meta
    await ttl.stop()


@running
async def test_namespace_default_account_and_deletion(api: Api) -> None:
    ctrl = NamespaceController(api, root_ca_pem="PEM")
    ctrl.start()
    api.create(NAMESPACES, {"metadata": {"name": "team"},
                            "spec": {"finalizers": ["kubernetes"]}})
    await settle(ctrl)
    api.get(SERVICE_ACCOUNTS, "team", "default")
    assert api.get(CONFIG_MAPS, "team", "kube-root-ca.crt")["data"] == {"ca.crt": "PEM"}
    api.create(PODS, {**bare_pod("p", nodeName="node"),
                      "metadata": {"name": "p", "namespace": "team"}})
    api.delete(NAMESPACES, None, "team")
    await settle(ctrl)
    ns = api.get(NAMESPACES, None, "team")
    assert ns["status"]["phase"] == "Terminating"
    remaining = {c["type"]: c for c in ns["status"]["conditions"]}["NamespaceContentRemaining"]
    assert remaining["message"] == "Some resources are remaining: pods. has 1 resource instances"
    kubelet_finish(api, "team", "p")
    await settle(ctrl)
    assert [n["metadata"]["name"] for n in api.list(NAMESPACES)[0]] == ["default"]
    await ctrl.stop()


@running
async def test_quota_status_follows_usage(api: Api) -> None:
    ctrl = ResourceQuotaController(api)
    ctrl.start()
    api.create(QUOTAS, {"metadata": {"name": "q", "namespace": "default"},
                        "spec": {"hard": {"pods": "5", "requests.cpu": "2000m"}}})
    api.create(PODS, bare_pod("a", "500m"))
    await settle(ctrl)
    status = api.get(QUOTAS, "default", "q")["status"]
    assert status == {"hard": {"pods": "5", "requests.cpu": "2"},
                      "used": {"pods": "1", "requests.cpu": "500m"}}
    await ctrl.stop()
