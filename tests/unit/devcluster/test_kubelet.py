"""The kubelet against the real in-process API and the real runtime."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from sandboxkit.devcluster import errors
from sandboxkit.devcluster.api import Api
from sandboxkit.devcluster.images import ImageTable
from sandboxkit.devcluster.kubelet import Kubelet
from sandboxkit.devcluster.podenv import EnvResolver, expand
from sandboxkit.devcluster.podlogs import LogOptions, read_logs
from sandboxkit.devcluster.podworker import PodWorkers, go_duration
from sandboxkit.devcluster.qos import qos_class
from sandboxkit.devcluster.resources import ResourceType, lookup
from sandboxkit.devcluster.runtime import ContainerRuntime, ContainerStartError

PODS = lookup("", "v1", "pods")
assert PODS is not None
EVENTS = lookup("", "v1", "events")
assert EVENTS is not None


def kubelet_events(api: Api, pod: str | None = None) -> list[tuple[str, str, str, str]]:
    """(pod, type, reason, message) of the kubelet's Events, in the order last recorded."""
    items = sorted(api.list(EVENTS)[0], key=lambda e: int(e["metadata"]["resourceVersion"]))
    return [(e["involvedObject"]["name"], e["type"], e["reason"], e["message"]) for e in items
            if e["source"]["component"] == "kubelet"
            and (pod is None or e["involvedObject"]["name"] == pod)]


def reasons(api: Api, pod: str) -> list[str]:
    return [e[2] for e in kubelet_events(api, pod)]


def times_recorded(api: Api, pod: str, reason: str) -> int:
    """How often an event happened: the recorder folds repeats into ``count``."""
    return sum(e.get("count", 1) for e in api.list(EVENTS)[0]
               if e["involvedObject"]["name"] == pod and e["reason"] == reason)


def pod(name: str, command: list[str] | None, image: str = "busybox:1.36",
        policy: str = "Never", **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": image}
    if command is not None:
        container["command"] = command
    container.update(spec.pop("container", {}))
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": "devcluster-node", "restartPolicy": policy,
                     "terminationGracePeriodSeconds": 1, "containers": [container], **spec}}


Scenario = Callable[[Api, Kubelet], Awaitable[None]]


def run(tmp_path: Path, scenario: Scenario) -> None:
    async def main() -> None:
        api = Api()
        runtime = ContainerRuntime(tmp_path / "node")
        kubelet = Kubelet(api, runtime, ImageTable(), image_backoff=0.4, crash_backoff=0.3,
                          api_port=6443)
        kubelet.start()
        try:
            await asyncio.wait_for(scenario(api, kubelet), 30)
        finally:
            await kubelet.stop()
            await runtime.shutdown()

    asyncio.run(main())


async def until(api: Api, name: str, check: Callable[[dict[str, Any]], bool],
                timeout: float = 10) -> dict[str, Any]:
    """The pod once ``check`` holds, re-examined after each change to it (no polling)."""
    changed = asyncio.Event()

    def on_change(_: str, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt is PODS and obj["metadata"]["name"] == name:
            changed.set()

    api.subscribe(on_change)
    deadline = time.monotonic() + timeout
    while True:
        obj = api.get(PODS, "default", name)
        if check(obj):
            return obj
        changed.clear()
        try:
            await asyncio.wait_for(changed.wait(), deadline - time.monotonic())
        except TimeoutError:
            raise AssertionError(f"{name}: {obj.get('status')}") from None


async def deleted(api: Api, name: str, timeout: float = 10) -> None:
    """Return once the pod has left storage."""
    gone = asyncio.Event()

    def on_change(kind: str, rt: ResourceType, obj: dict[str, Any]) -> None:
        if kind == "DELETED" and rt is PODS and obj["metadata"]["name"] == name:
            gone.set()

    api.subscribe(on_change)
    if any(p["metadata"]["name"] == name for p in api.list(PODS, "default")[0]):
        await asyncio.wait_for(gone.wait(), timeout)


def phase(p: dict[str, Any]) -> str | None:
    return p.get("status", {}).get("phase")


def state(p: dict[str, Any]) -> dict[str, Any]:
    return p["status"]["containerStatuses"][0]["state"]


def test_pod_runs_to_completion(tmp_path: Path) -> None:
    async def scenario(api: Api, kubelet: Kubelet) -> None:
        api.create(PODS, pod("ok", ["sh", "-c", 'echo "$POD_NAME $HOSTNAME '
                                              '$KUBERNETES_SERVICE_PORT"'],
                             container={"env": [{"name": "POD_NAME", "valueFrom": {
                                 "fieldRef": {"fieldPath": "metadata.name"}}}]}))
        done = await until(api, "ok", lambda p: phase(p) == "Succeeded")
        term = state(done)["terminated"]
        assert (term["exitCode"], term["reason"]) == (0, "Completed")
        cs = done["status"]["containerStatuses"][0]
        assert cs["image"] == "docker.io/library/busybox:1.36"
        assert cs["imageID"].startswith("docker.io/library/busybox@sha256:")
        assert cs["containerID"].startswith("containerd://")
        status = done["status"]
        assert (status["podIP"], status["hostIP"], status["qosClass"]) == (
            "127.0.0.1", "127.0.0.1", "BestEffort")
        conditions = {c["type"]: c for c in status["conditions"]}
        assert conditions["Ready"]["reason"] == "PodCompleted"
        assert conditions["PodScheduled"]["status"] == "True"
        assert reasons(api, "ok") == ["Pulling", "Pulled", "Created", "Started"]
        assert any(e[3].startswith('Successfully pulled image "busybox:1.36" in ')
                   for e in kubelet_events(api))
        chunks = [c async for c in kubelet.stream_logs(done, "main", LogOptions())]
        assert b"".join(chunks) == b"ok ok 6443\n"

    run(tmp_path, scenario)


def test_running_pod_exec_and_graceful_deletion(tmp_path: Path) -> None:
    async def scenario(api: Api, kubelet: Kubelet) -> None:
        api.create(PODS, pod("idle", ["sh", "-c", "echo ready > /tmp/flag; exec sleep 60"],
                             policy="Always"))
        running = await until(api, "idle", lambda p: phase(p) == "Running")
        assert "running" in state(running)
        assert all(c["status"] == "True" for c in running["status"]["conditions"])
        await asyncio.sleep(0.2)
        container = kubelet.check_exec(running, None)
        proc = await kubelet.start_exec(running, container, ["cat", "/tmp/flag"])
        assert (await proc.communicate())[0] == b"ready\n"

        with pytest.raises(errors.ApiError) as exc:
            kubelet.check_exec(running, "other")
        assert (exc.value.code, exc.value.message) == (
            400, "container other is not valid for pod idle")
        with pytest.raises(ContainerStartError) as start:
            await kubelet.start_exec(running, "main", ["no-such-cmd"])
        assert str(start.value) == 'exec: "no-such-cmd": executable file not found in $PATH'

        api.delete(PODS, "default", "idle")
        await deleted(api, "idle")
        assert "Killing" in reasons(api, "idle")
        assert ("idle", "Normal", "Killing", "Stopping container main") in kubelet_events(api)
        assert not (tmp_path / "node" / running["metadata"]["uid"]).exists()

    run(tmp_path, scenario)


def test_image_pull_failure_backs_off(tmp_path: Path) -> None:
    async def scenario(api: Api, kubelet: Kubelet) -> None:
        api.create(PODS, pod("img", ["true"], image="doesnotexist/image"))
        pulled = await until(api, "img", lambda p: "ErrImagePull" in str(p.get("status")))
        waiting = state(pulled)["waiting"]
        assert waiting["message"].startswith(
            'rpc error: code = NotFound desc = failed to pull and unpack image '
            '"docker.io/doesnotexist/image:latest"')
        backoff = await until(api, "img", lambda p: "ImagePullBackOff" in str(p.get("status")))
        assert state(backoff)["waiting"] == {
            "reason": "ImagePullBackOff", "message": 'Back-off pulling image "doesnotexist/image"'}
        assert phase(backoff) == "Pending"
        await asyncio.sleep(1.0)
        assert times_recorded(api, "img", "Pulling") >= 2  # it keeps retrying
        assert ("img", "Warning", "Failed", "Error: ErrImagePull") in kubelet_events(api)
        assert ("img", "Normal", "BackOff", 'Back-off pulling image "doesnotexist/image"'
                ) in kubelet_events(api)
        with pytest.raises(errors.ApiError) as exc:
            kubelet.log_path(backoff, "main")
        assert exc.value.message.startswith('container "main" in pod "img" is waiting to start')

    run(tmp_path, scenario)


def test_invalid_image_and_missing_command(tmp_path: Path) -> None:
    async def scenario(api: Api, kubelet: Kubelet) -> None:
        api.create(PODS, pod("inv", ["true"], image="busybox:"))
        api.create(PODS, pod("nf", ["no-such-binary"]))
        api.create(PODS, pod("nocmd", None))
        inv = await until(api, "inv", lambda p: "InvalidImageName" in str(p.get("status")))
        assert state(inv)["waiting"]["message"] == (
            'Failed to apply default image tag "busybox:": couldn\'t parse image name '
            '"busybox:": invalid reference format')
        assert reasons(api, "inv") == ["InspectFailed", "Failed"]
        nf = await until(api, "nf", lambda p: phase(p) == "Failed")
        term = state(nf)["terminated"]
        assert (term["exitCode"], term["reason"]) == (128, "StartError")
        assert term["message"].endswith(
            'exec: "no-such-binary": executable file not found in $PATH: unknown')
        nocmd = await until(api, "nocmd", lambda p: "CreateContainerError" in str(p.get("status")))
        assert "no image entrypoint" in state(nocmd)["waiting"]["message"]

    run(tmp_path, scenario)


def test_crash_loop_and_previous_logs(tmp_path: Path) -> None:
    async def scenario(api: Api, kubelet: Kubelet) -> None:
        api.create(PODS, pod("crash", ["sh", "-c", "echo run; exit 2"], policy="Always"))
        looping = await until(api, "crash", lambda p: "CrashLoopBackOff" in str(p.get("status")))
        cs = looping["status"]["containerStatuses"][0]
        assert cs["restartCount"] >= 1
        assert cs["lastState"]["terminated"]["exitCode"] == 2
        assert cs["state"]["waiting"]["message"].startswith("back-off 300ms restarting failed "
                                                            "container=main pod=crash_default(")
        assert phase(looping) == "Running"
        assert "BackOff" in reasons(api, "crash")
        previous = kubelet.log_path(looping, "main", previous=True)
        assert previous is not None and previous.read_bytes().endswith(b" stdout F run\n")

    run(tmp_path, scenario)


def test_active_deadline_and_config_errors(tmp_path: Path) -> None:
    async def scenario(api: Api, kubelet: Kubelet) -> None:
        api.create(PODS, pod("dl", ["sleep", "60"], activeDeadlineSeconds=1))
        env = [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}},
               {"name": "B", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "b"}}},
               {"name": "C", "value": "$(A)-$(B)-$(NOPE)"}]
        api.create(PODS, pod("cfg", ["sh", "-c", 'echo "$C"'], container={"env": env}))
        missing = await until(api, "cfg", lambda p: "CreateContainerConfigError" in str(
            p.get("status")))
        assert state(missing)["waiting"]["message"] == 'configmap "cfg" not found'
        cm = lookup("", "v1", "configmaps")
        secret = lookup("", "v1", "secrets")
        assert cm is not None and secret is not None
        api.create(cm, {"metadata": {"name": "cfg", "namespace": "default"}, "data": {"a": "x"}})
        api.create(secret, {"metadata": {"name": "sec", "namespace": "default"},
                            "data": {"b": base64.b64encode(b"y").decode()}})
        done = await until(api, "cfg", lambda p: phase(p) == "Succeeded")
        out = b"".join([c async for c in kubelet.stream_logs(done, None, LogOptions())])
        assert out == b"x-y-$(NOPE)\n"

        failed = await until(api, "dl", lambda p: phase(p) == "Failed")
        assert failed["status"]["reason"] == "DeadlineExceeded"
        assert "DeadlineExceeded" in reasons(api, "dl")

    run(tmp_path, scenario)


def test_helpers() -> None:
    assert expand("$(A) $$(A) $(B) $x", {"A": "1"}) == "1 $(A) $(B) $x"
    assert [go_duration(s) for s in (0, 0.012, 1.5, 10, 80, 300)] == [
        "0s", "12ms", "1.5s", "10s", "1m20s", "5m0s"]
    res = {"cpu": "1", "memory": "2Gi"}
    guaranteed = {"spec": {"containers": [{"resources": {"limits": res, "requests": res}}]}}
    burstable = {"spec": {"containers": [{"resources": {"requests": {"cpu": "250m"}}}]}}
    assert qos_class(guaranteed) == "Guaranteed"
    assert qos_class(burstable) == "Burstable"
    assert qos_class({"spec": {"containers": [{}]}}) == "BestEffort"


def test_log_and_exec_preconditions(tmp_path: Path) -> None:
    async def scenario(api: Api, kubelet: Kubelet) -> None:
        unbound = pod("unbound", ["true"])
        unbound["spec"].pop("nodeName")
        unbound["metadata"]["uid"] = "u1"
        with pytest.raises(errors.ApiError) as exc:
            kubelet.check_exec(unbound, "main")
        assert exc.value.message == "pod unbound does not have a host assigned"
        assert kubelet.log_path(unbound, "main") is None
        ghost = pod("ghost", ["true"])
        ghost["metadata"]["uid"] = "u2"
        with pytest.raises(errors.ApiError) as exc:
            await kubelet.start_exec(ghost, kubelet.check_exec(ghost, None), ["true"])
        assert exc.value.message == (
            'Internal error occurred: unable to upgrade connection: container not found ("main")')
        with pytest.raises(errors.ApiError) as exc:
            kubelet.log_path(ghost, "main", previous=True)
        assert exc.value.message == 'previous terminated container "main" in pod "ghost" not found'

    run(tmp_path, scenario)


# -- the pod worker on its own -----------------------------------------------------------

def run_workers(tmp_path: Path, scenario: Callable[[Api, PodWorkers], Awaitable[None]]) -> None:
    """``scenario`` against pod workers without the kubelet's watch: it hands them pods."""
    async def main() -> None:
        api = Api()
        runtime = ContainerRuntime(tmp_path / "node")
        env = EnvResolver(api, host_ip="127.0.0.1", api_host="127.0.0.1", api_port=6443)
        workers = PodWorkers(api, runtime, ImageTable(), env, host_ip="127.0.0.1",
                             image_backoff=0.4, crash_backoff=0.3)
        try:
            await asyncio.wait_for(scenario(api, workers), 30)
        finally:
            await workers.stop()
            await runtime.shutdown()

    asyncio.run(main())


def test_pod_worker_missing_secret_key_is_create_container_config_error(tmp_path: Path) -> None:
    async def scenario(api: Api, workers: PodWorkers) -> None:
        secrets = lookup("", "v1", "secrets")
        assert secrets is not None
        api.create(secrets, {"metadata": {"name": "sec", "namespace": "default"},
                             "data": {"user": base64.b64encode(b"me").decode()}})
        env = [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}}]
        created = api.create(PODS, pod("pw", ["sh", "-c", 'echo "$PW"'],
                                       container={"env": env}))
        workers.update_pod("ADDED", created)
        stuck = await until(api, "pw", lambda p: "CreateContainerConfigError" in str(
            p.get("status")))
        assert state(stuck)["waiting"] == {
            "reason": "CreateContainerConfigError",
            "message": "couldn't find key password in Secret default/sec"}
        assert phase(stuck) == "Pending"
        assert ("pw", "Warning", "Failed", "Error: couldn't find key password in Secret "
                "default/sec") in kubelet_events(api, "pw")  # the message, as upstream
        record = workers.record(created["metadata"]["uid"], "main")
        assert record is not None and record.runs == 0  # never created

        sec = api.get(secrets, "default", "sec")
        sec["data"]["password"] = base64.b64encode(b"hunter2").decode()
        api.update(secrets, sec)  # the worker retries after its back-off
        await until(api, "pw", lambda p: phase(p) == "Succeeded")
        assert record.runs == 1 and record.log_path is not None
        out = b"".join([c async for c in read_logs(record.log_path, LogOptions())])
        assert out == b"hunter2\n"

    run_workers(tmp_path, scenario)


def test_pod_worker_bookkeeping(tmp_path: Path) -> None:
    async def scenario(api: Api, workers: PodWorkers) -> None:
        ghost = pod("ghost", ["true"])
        ghost["metadata"]["uid"] = "u-ghost"
        workers.update_pod("DELETED", ghost)  # no worker for a pod it never ran
        assert workers.record("u-ghost", "main") is None

        created = api.create(PODS, pod("once", ["sh", "-c", "exit 3"]))
        uid = created["metadata"]["uid"]
        workers.update_pod("ADDED", created)
        failed = await until(api, "once", lambda p: phase(p) == "Failed")
        assert state(failed)["terminated"]["exitCode"] == 3
        record = workers.record(uid, "main")
        assert record is not None and record.runs == 1  # restartPolicy Never

        api.delete(PODS, "default", "once")  # a terminated pod goes at once
        await deleted(api, "once")
        workers.update_pod("DELETED", failed)
        for _ in range(50):  # the worker forgets the pod once it has finalized it
            if workers.record(uid, "main") is None:
                break
            await asyncio.sleep(0.05)
        assert workers.record(uid, "main") is None
        assert not (tmp_path / "node" / uid).exists()

        workers.update_pod("ADDED", api.create(PODS, pod("nocmd", None)))
        await until(api, "nocmd", lambda p: "CreateContainerError" in str(p.get("status")))
        assert any(e[1:3] == ("Warning", "Failed") and e[3].startswith(
            "Error: container has no command: ") for e in kubelet_events(api, "nocmd"))

    run_workers(tmp_path, scenario)
