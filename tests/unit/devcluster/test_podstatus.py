"""pods/status generation from a pod worker's state: phase, conditions, container statuses."""

from __future__ import annotations

from typing import Any

import pytest

from sandboxkit.devcluster.podstatus import (
    ContainerRecord,
    PodState,
    api_pod_status,
    bracketed,
    pod_conditions,
    pod_phase,
)

pytestmark = pytest.mark.unit

RUNNING: dict[str, Any] = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}


def terminated(code: int) -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}


def state(policy: str = "Always", *records: ContainerRecord, **fields: Any) -> PodState:
    pod = {"metadata": {"name": "p", "namespace": "default", "uid": "u"},
           "spec": {"restartPolicy": policy,
                    "containers": [{"name": r.name, "image": "busybox:1.36"}
                                   for r in records if not r.init]}}
    return PodState("u", "default", "p", pod, records={r.name: r for r in records}, **fields)


def record(name: str, current: dict[str, Any] | None = None, init: bool = False,
           **fields: Any) -> ContainerRecord:
    rec = ContainerRecord({"name": name, "image": "busybox:1.36"}, init=init, **fields)
    if current is not None:
        rec.state = current
    return rec


@pytest.mark.parametrize(("policy", "states", "phase"), [
    ("Always", [None], "Pending"),  # ContainerCreating
    ("Always", [RUNNING, terminated(0)], "Running"),
    ("Always", [terminated(0)], "Running"),  # will restart
    ("OnFailure", [terminated(1)], "Running"),
    ("OnFailure", [terminated(0)], "Succeeded"),
    ("Never", [terminated(0), terminated(0)], "Succeeded"),
    ("Never", [terminated(0), terminated(3)], "Failed"),
])
def test_phase_of_main_containers(
    policy: str, states: list[dict[str, Any] | None], phase: str
) -> None:
    records = [record(f"c{i}", s) for i, s in enumerate(states)]
    assert pod_phase(state(policy, *records)) == phase


def test_phase_with_init_containers() -> None:
    main = record("main", {"waiting": {"reason": "PodInitializing"}})
    assert pod_phase(state("Never", record("init", RUNNING, init=True), main)) == "Pending"
    assert pod_phase(state("Never", record("init", terminated(1), init=True), main)) == "Failed"
    assert pod_phase(state("Always", record("init", terminated(1), init=True), main)) == (
        "Pending")  # it will be retried
    assert pod_phase(state("Never", record("init", terminated(0), init=True),
                           record("main", RUNNING))) == "Running"


def test_crash_looping_container_counts_as_stopped() -> None:
    looping = record("main", {"waiting": {"reason": "CrashLoopBackOff"}},
                     last_state=terminated(2))
    assert pod_phase(state("Always", looping)) == "Running"


def test_conditions_reasons_and_transition_times() -> None:
    pending = state("Always", record("init", RUNNING, init=True),
                    record("a", {"waiting": {"reason": "PodInitializing"}}), record("b"))
    old = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "T0"},
           {"type": "Initialized", "status": "False", "lastTransitionTime": "T1"}]
    conditions = {c["type"]: c for c in pod_conditions(pending, old)}
    assert list(conditions) == ["PodReadyToStartContainers", "Initialized", "Ready",
                                "ContainersReady", "PodScheduled"]
    assert conditions["PodScheduled"] == old[0]  # the scheduler's, kept as it was
    assert conditions["Initialized"]["lastTransitionTime"] == "T1"  # status did not move
    assert conditions["Initialized"]["message"] == "containers with incomplete status: [init]"
    assert conditions["Ready"]["reason"] == "ContainersNotReady"
    assert conditions["Ready"]["message"] == "containers with unready status: [a b]"
    assert conditions["PodReadyToStartContainers"]["status"] == "False"

    done = state("Never", record("main", terminated(0)), sandbox_ready=True, terminal=True)
    conditions = {c["type"]: c for c in pod_conditions(done, [])}
    assert conditions["Ready"]["reason"] == "PodCompleted" and "message" not in conditions["Ready"]
    assert conditions["ContainersReady"]["reason"] == "PodCompleted"
    assert conditions["PodReadyToStartContainers"]["status"] == "False"
    assert conditions["Initialized"] == {"type": "Initialized", "status": "True",
                                         "lastProbeTime": None,
                                         "lastTransitionTime": conditions["Initialized"][
                                             "lastTransitionTime"]}


def test_api_pod_status() -> None:
    main = record("main", RUNNING, runs=3, container_id="containerd://abc")
    worker = state("Always", record("init", terminated(0), init=True, runs=1,
                                    container_id="containerd://def"), main,
                   start_time="T-worker", phase="Running")
    worker.pod["status"] = {"startTime": "T-first", "nominatedNodeName": "n"}

    before_sandbox = api_pod_status(worker, worker.pod, "10.0.0.5")
    assert "podIP" not in before_sandbox
    assert before_sandbox["hostIPs"] == [{"ip": "10.0.0.5"}]
    assert before_sandbox["startTime"] == "T-first"  # the first one stays
    assert before_sandbox["nominatedNodeName"] == "n"  # not the kubelet's: kept

    worker.sandbox_ready = True
    worker.reason, worker.message = "DeadlineExceeded", "too long"
    status = api_pod_status(worker, worker.pod, "10.0.0.5")
    assert (status["phase"], status["podIP"], status["podIPs"]) == (
        "Running", "10.0.0.5", [{"ip": "10.0.0.5"}])
    assert (status["reason"], status["message"], status["qosClass"]) == (
        "DeadlineExceeded", "too long", "BestEffort")
    [init] = status["initContainerStatuses"]
    [cs] = status["containerStatuses"]
    assert (init["name"], init["restartCount"], init["ready"]) == ("init", 0, False)
    assert (cs["name"], cs["restartCount"], cs["ready"], cs["started"]) == ("main", 2, True, True)
    assert cs["image"] == "docker.io/library/busybox:1.36"
    assert cs["imageID"].startswith("docker.io/library/busybox@sha256:")
    assert cs["containerID"] == "containerd://abc"


def test_container_status_before_creation() -> None:
    entry = record("main").status()
    assert entry == {"name": "main", "state": {"waiting": {"reason": "ContainerCreating"}},
                     "lastState": {}, "ready": False, "restartCount": 0,
                     "image": "busybox:1.36", "imageID": "", "started": False}


def test_bracketed() -> None:
    assert bracketed([]) == "[]"
    assert bracketed(["a", "b"]) == "[a b]"
