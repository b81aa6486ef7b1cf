"""Volumes: claims wait for a consumer, bind when it is scheduled, mount into its containers.

The scheduler and the PersistentVolume controller run against the real in-process API; the
runtime starts real (namespaced) processes with the bind mounts and user a kubelet asks for.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_controllers import events, make_api, settle

from sandboxkit.devcluster.api import Api
from sandboxkit.devcluster.controllers import PersistentVolumeController, Scheduler
from sandboxkit.devcluster.images import ImageTable
from sandboxkit.devcluster.kubelet import Kubelet
from sandboxkit.devcluster.resources import require
from sandboxkit.devcluster.runtime import ContainerRuntime, Mount
from sandboxkit.devcluster.volumes import claim_dir

pytestmark = pytest.mark.unit

PODS = require("", "v1", "pods")
CLAIMS = require("", "v1", "persistentvolumeclaims")


def claim(name: str = "data") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}


def pod_with_claim(name: str = "p", claim_name: str = "data") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default"}, "spec": {
        "containers": [{"name": "c", "image": "busybox", "command": ["true"],
                        "volumeMounts": [{"name": "w", "mountPath": "/w"}]}],
        "volumes": [{"name": "w", "persistentVolumeClaim": {"claimName": claim_name}}]}}


async def until(api: Api, name: str, check: Callable[[dict[str, Any]], bool],
                timeout: float = 10) -> dict[str, Any]:
    """The pod once ``check`` holds, re-examined after each change (no polling)."""
    changed = asyncio.Event()
    api.subscribe(lambda _kind, rt, obj: changed.set() if rt is PODS else None)
    deadline = asyncio.get_running_loop().time() + timeout
    while not check(obj := api.get(PODS, "default", name)):
        changed.clear()
        await asyncio.wait_for(changed.wait(), deadline - asyncio.get_running_loop().time())
    return obj


def test_claims_wait_for_a_consumer_and_bind_when_it_is_scheduled(tmp_path: Path) -> None:
    async def body() -> None:
        api = make_api()
        controllers = [PersistentVolumeController(api, tmp_path), Scheduler(api)]
        for controller in controllers:
            controller.start()
        api.create(PODS, pod_with_claim())
        await settle(*controllers)
        message = ('0/1 nodes are available: persistentvolumeclaim "data" not found. '
                   "preemption: 0/1 nodes are available: 1 Preemption is not helpful for "
                   "scheduling.")
        assert ("p", "Warning", "FailedScheduling", message) in events(api)
        assert "nodeName" not in api.get(PODS, "default", "p")["spec"]

        api.create(CLAIMS, claim("other"))  # nobody uses it: it stays Pending
        api.create(CLAIMS, claim())  # the pod's claim: the pod is retried and binds it
        await settle(*controllers)
        other = api.get(CLAIMS, "default", "other")
        assert other["status"]["phase"] == "Pending"
        assert ("other", "Normal", "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding") in events(api)
        assert api.get(PODS, "default", "p")["spec"]["nodeName"] == "devcluster-node"
        bound = api.get(CLAIMS, "default", "data")
        assert bound["status"]["phase"] == "Bound"
        assert bound["status"]["capacity"] == {"storage": "1Gi"}
        assert bound["spec"]["volumeName"] == f"pvc-{bound['metadata']['uid']}"

        # the claim's data goes with the claim
        data = claim_dir(tmp_path, bound["spec"]["volumeName"])
        data.mkdir(parents=True)
        api.delete(CLAIMS, "default", "data")
        await settle(*controllers)
        assert not data.exists()
        for controller in controllers:
            await controller.stop()

    asyncio.run(body())


def test_runtime_mounts_volumes_and_honours_read_only(tmp_path: Path) -> None:
    try:
        runtime = ContainerRuntime(tmp_path / "node", isolation="bwrap")
    except RuntimeError as exc:
        pytest.skip(f"bwrap is not available here: {exc}")
    # as the kubelet does: volumes live in the node directory, which pods' host id can reach
    shared, frozen = runtime.root_dir / "shared", runtime.root_dir / "frozen"
    shared.mkdir()
    frozen.mkdir()
    (frozen / "f").write_text("ro\n")

    async def body() -> None:
        try:
            await runtime.start_container(
                "pod", "main", ["sleep", "30"], {}, None,
                volumes=[Mount(shared, "/data"), Mount(frozen, "/config", read_only=True)])
            script = "echo hi > /data/x && cat /config/f && ! touch /config/g"
            proc = await runtime.exec("pod", "main", ["sh", "-c", script])
            out, err = await proc.communicate()
            assert proc.returncode == 0, err
            assert out == b"ro\n"
            assert (shared / "x").read_text() == "hi\n"
            assert not (frozen / "g").exists()
        finally:
            await runtime.shutdown()

    asyncio.run(body())


def test_runtime_runs_as_the_requested_user_under_bubblewrap(tmp_path: Path) -> None:
    try:
        runtime = ContainerRuntime(tmp_path / "node", isolation="bwrap")
    except RuntimeError as exc:
        pytest.skip(f"runAsUser is enforced under bubblewrap only: {exc}")
    shared = runtime.root_dir / "shared"
    shared.mkdir()

    async def body() -> None:
        try:
            container = await runtime.start_container(
                "pod", "main", ["sleep", "30"], {}, None,
                volumes=[Mount(shared, "/data")], user=(1234, 2345))
            proc = await runtime.exec("pod", "main", ["sh", "-c", "id -u; id -g; touch /data/e"])
            out, err = await proc.communicate()
            assert proc.returncode == 0, err
            assert out.split() == [b"1234", b"2345"]
            # the user namespace maps the uid to an unprivileged host id (the devcluster's
            # own user when that is not root)
            host_uid = runtime.host_id[0] if runtime.host_id is not None else os.getuid()
            assert host_uid != 0
            assert (shared / "e").stat().st_uid == host_uid
            assert container.user == (1234, 2345)
        finally:
            await runtime.shutdown()

    asyncio.run(body())


def test_kubelet_shares_empty_dirs_and_refuses_root_for_run_as_non_root(tmp_path: Path) -> None:
    async def body() -> None:
        api = Api()
        runtime = ContainerRuntime(tmp_path / "node")
        if runtime.isolation == "none":
            pytest.skip(f"volumes need a mount namespace: {runtime.describe()}")
        kubelet = Kubelet(api, runtime, ImageTable(), api_port=6443)
        kubelet.start()
        try:
            volume_mount = {"volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}
            api.create(PODS, {"metadata": {"name": "two", "namespace": "default"}, "spec": {
                "nodeName": "devcluster-node", "restartPolicy": "Never",
                "volumes": [{"name": "scratch", "emptyDir": {}}],
                "containers": [
                    {"name": "writer", "image": "busybox", "command": ["sleep", "30"],
                     **volume_mount},
                    {"name": "reader", "image": "busybox", "command": ["sleep", "30"],
                     **volume_mount}]}})
            api.create(PODS, {"metadata": {"name": "nonroot", "namespace": "default"}, "spec": {
                "nodeName": "devcluster-node", "restartPolicy": "Never",
                "securityContext": {"runAsNonRoot": True},
                "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}})
            refused = await until(api, "nonroot", lambda p: "CreateContainerConfigError" in str(
                p.get("status")))
            waiting = refused["status"]["containerStatuses"][0]["state"]["waiting"]
            uid = refused["metadata"]["uid"]
            assert waiting["message"] == ("container has runAsNonRoot and image will run as root "
                                          f'(pod: "nonroot_default({uid})", container: c)')

            two = await until(api, "two", lambda p: p.get("status", {}).get("phase") == "Running")
            write = await kubelet.start_exec(two, "writer", ["sh", "-c", "echo x > /scratch/f"])
            await write.communicate()
            read = await kubelet.start_exec(two, "reader", ["cat", "/scratch/f"])
            assert (await read.communicate())[0] == b"x\n"
        finally:
            await kubelet.stop()
            await runtime.shutdown()

    asyncio.run(body())
