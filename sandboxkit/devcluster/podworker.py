"""Pod workers: one task per pod drives the pod's lifecycle the way ``kubelet.syncPod`` does.

A worker pulls each container's image, builds its configuration (environment from
:mod:`.podenv`, volumes, user), starts it through the :class:`~.runtime.ContainerRuntime`,
waits for it and applies the restart policy with back-off, enforces
``activeDeadlineSeconds``, and on deletion stops the containers gracefully (SIGTERM, then
SIGKILL after the grace period) before finalizing the deletion. After every change it
writes ``pods/status`` as :mod:`.podstatus` generates it, and records the kubelet's events
with their reasons and wording. Where the devcluster must differ:

- Images are looked up in an :class:`~.images.ImageTable`; there is no image
  ``ENTRYPOINT``/``CMD``: ``command`` (then ``args``) is the argv, ``args`` alone is the
  argv, and a container with neither waits in ``CreateContainerError`` with a message
  saying so (a real node would run the image's default command).
- Back-offs start short (``image_backoff``/``crash_backoff``, 2 s by default instead of the
  kubelet's 10 s) and double up to 300 s, so failures show up in tests within seconds.
- Volumes: persistentVolumeClaim (the claim's host directory, see :mod:`.volumes`) and
  emptyDir (a per-pod directory) are bind-mounted, ``readOnly`` and ``subPath`` honoured;
  other sources (the ServiceAccount token's projected volume, configMap, secret) are not.
  The image's default user is taken to be root, so ``runAsNonRoot`` without ``runAsUser``
  fails as it does for root images on a node.
- Probes, lifecycle hooks and resource enforcement are not implemented: a running
  container is ready.
- Events carry no ``involvedObject.fieldPath`` (``Api.record_event`` names the pod only).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import clock, errors
from .api import Api
from .images import ImageTable, normalize
from .podenv import ContainerConfigError, EnvResolver, expand
from .podstatus import ContainerRecord, PodState, api_pod_status, pod_phase
from .resources import require
from .runtime import ContainerRuntime, ContainerStartError, Mount
from .volumes import claim_dir

__all__ = ["PodWorker", "PodWorkers", "go_duration"]

log = logging.getLogger(__name__)

PODS = require("", "v1", "pods")
CLAIMS = require("", "v1", "persistentvolumeclaims")
MAX_BACKOFF = 300.0
ERR_IMAGE_PULL_VISIBLE = 1.0  # seconds ErrImagePull shows before ImagePullBackOff
NEVER_STARTED = "1970-01-01T00:00:00Z"  # startedAt of a container runc failed to start
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"
NO_COMMAND = (
    "container has no command: the devcluster runs images on the host filesystem and has "
    "no image entrypoint, so set command (or args) in the container spec"
)
RUNC_PREFIX = (
    "failed to create containerd task: failed to create shim task: OCI runtime create "
    "failed: runc create failed: unable to start container process: "
)


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String`` for whole milliseconds: ``12ms``, ``1.5s``, ``1m20s``."""
    ms = int(seconds * 1000)
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    text = f"{secs}s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return text


def _default_pull_policy(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    if "@" in image:
        return "IfNotPresent"
    return "IfNotPresent" if ":" in last and not last.endswith(":latest") else "Always"


@dataclass
class PodWorker(PodState):
    """A pod's state plus the task driving it, woken by every change to the pod."""

    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class PodWorkers:
    """The node's pod workers, keyed by pod uid (the kubelet's ``podWorkers``)."""

    def __init__(
        self,
        api: Api,
        runtime: ContainerRuntime,
        images: ImageTable,
        env: EnvResolver,
        *,
        host_ip: str,
        image_backoff: float,
        crash_backoff: float,
    ) -> None:
        self.api = api
        self.runtime = runtime
        self.images = images
        self.env = env
        self.host_ip = host_ip
        self.image_backoff = image_backoff
        self.crash_backoff = crash_backoff
        self._workers: dict[str, PodWorker] = {}
        self._present: set[str] = set()  # images pulled on this node

    def update_pod(self, event_type: str, pod: dict[str, Any]) -> None:
        """Hand a change of a pod bound to this node to its worker, starting one if new."""
        meta = pod["metadata"]
        uid = meta.get("uid") or f"{meta['namespace']}/{meta['name']}"
        worker = self._workers.get(uid)
        if worker is None:
            if event_type == "DELETED":
                return
            worker = PodWorker(uid, meta["namespace"], meta["name"], pod)
            self._workers[uid] = worker
            worker.task = asyncio.get_running_loop().create_task(self._run(worker))
        worker.pod = pod
        worker.wake.set()

    async def stop(self) -> None:
        """Cancel every worker (containers keep running until ``runtime.shutdown()``)."""
        tasks = [w.task for w in self._workers.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()

    def record(self, uid: str, container: str) -> ContainerRecord | None:
        """What the worker of pod ``uid`` knows of ``container``; None if it has no worker."""
        worker = self._workers.get(uid)
        return worker.records.get(container) if worker else None

    # -- the worker task -----------------------------------------------------------------

    def _fetch(self, worker: PodWorker) -> dict[str, Any] | None:
        pod = self.api.get_or_none(PODS, worker.namespace, worker.name)
        if pod is None:
            return None
        if pod["metadata"].get("uid", worker.uid) != worker.uid and pod["metadata"].get("uid"):
            return None  # a new pod with the same name: ours is gone
        worker.pod = pod
        return pod

    async def _run(self, worker: PodWorker) -> None:
        lifecycle = asyncio.create_task(self._lifecycle(worker))
        lifecycle.add_done_callback(_report_failure)
        try:
            while True:
                await worker.wake.wait()
                worker.wake.clear()
                pod = self._fetch(worker)
                if pod is None or pod["metadata"].get("deletionTimestamp"):
                    break
            lifecycle.cancel()
            await asyncio.gather(lifecycle, return_exceptions=True)
            await self._terminate(worker, pod)
        except asyncio.CancelledError:
            lifecycle.cancel()
            raise
        except Exception:
            log.exception("kubelet worker for pod %s/%s failed", worker.namespace, worker.name)
        finally:
            if self._workers.get(worker.uid) is worker:
                del self._workers[worker.uid]

    async def _lifecycle(self, worker: PodWorker) -> None:
        pod = worker.pod
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            worker.terminal = True
            return
        spec = pod["spec"]
        for c in spec.get("initContainers", []):
            worker.records[c["name"]] = ContainerRecord(c, init=True)
        for c in spec.get("containers", []):
            worker.records[c["name"]] = ContainerRecord(c)
            if spec.get("initContainers"):
                worker.records[c["name"]].state = {"waiting": {"reason": "PodInitializing"}}
        worker.start_time = clock.rfc3339()
        self._write_status(worker)
        worker.sandbox_ready = True
        self._write_status(worker)
        deadline = spec.get("activeDeadlineSeconds")
        try:
            await asyncio.wait_for(self._run_containers(worker), deadline)
        except TimeoutError:
            await self._deadline_exceeded(worker)

    async def _run_containers(self, worker: PodWorker) -> None:
        for record in [r for r in worker.records.values() if r.init]:
            if await self._supervise(worker, record) != 0:
                return  # restartPolicy Never and an init container failed: pod Failed
        mains = [r for r in worker.records.values() if not r.init]
        await asyncio.gather(*(self._supervise(worker, r) for r in mains))

    async def _supervise(self, worker: PodWorker, record: ContainerRecord) -> int:
        """Run one container until the restart policy says it is done; its last exit code."""
        policy = worker.pod["spec"].get("restartPolicy", "Always")
        while True:
            if not await self._ensure_image(worker, record):
                await asyncio.Event().wait()  # permanent failure: wait for deletion
            exit_code = await self._start_and_wait(worker, record)
            if exit_code is None:
                await asyncio.sleep(self.crash_backoff)  # config error: retry
                continue
            if policy == "Never" or (exit_code == 0 and (policy == "OnFailure" or record.init)):
                return exit_code
            await self._crash_backoff(worker, record)

    async def _crash_backoff(self, worker: PodWorker, record: ContainerRecord) -> None:
        if record.crash_backoff == 0:
            record.crash_backoff = self.crash_backoff  # the first restart is immediate
            return
        delay = record.crash_backoff
        pod = f"{worker.name}_{worker.namespace}({worker.uid})"
        record.last_state = {"terminated": record.state["terminated"]}
        record.state = {"waiting": {
            "reason": "CrashLoopBackOff",
            "message": f"back-off {go_duration(delay)} restarting failed "
                       f"container={record.name} pod={pod}",
        }}
        self._event(worker, "Warning", "BackOff",
                    f"Back-off restarting failed container {record.name} in pod {pod}")
        self._write_status(worker)
        await asyncio.sleep(delay)
        record.crash_backoff = min(delay * 2, MAX_BACKOFF)

    async def _ensure_image(self, worker: PodWorker, record: ContainerRecord) -> bool:
        image = record.spec.get("image", "")
        failure = self.images.resolve(image)
        if failure is not None and failure.reason == "InvalidImageName":
            self._event(worker, "Warning", "InspectFailed", failure.message)
            self._fail_waiting(worker, record, "InvalidImageName", failure.message)
            return False
        policy = record.spec.get("imagePullPolicy") or _default_pull_policy(image)
        if policy == "Never" and failure is not None:
            message = f'Container image "{image}" is not present with pull policy of Never'
            self._event(worker, "Warning", "ErrImageNeverPull", message)
            self._fail_waiting(worker, record, "ErrImageNeverPull", message)
            return False
        if policy == "Never" or (policy == "IfNotPresent" and normalize(image) in self._present):
            self._event(worker, "Normal", "Pulled",
                        f'Container image "{image}" already present on machine')
            return True
        while True:
            wait = record.image_retry_at - time.monotonic()
            if wait > 0:
                message = f'Back-off pulling image "{image}"'
                self._event(worker, "Normal", "BackOff", message)
                self._fail_waiting(worker, record, "ImagePullBackOff", message)
                await asyncio.sleep(wait)
            self._event(worker, "Normal", "Pulling", f'Pulling image "{image}"')
            started = time.monotonic()
            failure = self.images.resolve(image)
            if failure is None:
                took = go_duration(time.monotonic() - started)
                self._present.add(normalize(image))
                record.image_backoff = 0.0
                self._event(worker, "Normal", "Pulled",
                            f'Successfully pulled image "{image}" in {took} ({took} including '
                            f"waiting). Image size: {self.images.size(image)} bytes.")
                return True
            message = f"rpc error: code = NotFound desc = {failure.message}"
            self._event(worker, "Warning", "Failed", f'Failed to pull image "{image}": {message}')
            record.image_backoff = min(record.image_backoff * 2 or self.image_backoff,
                                       MAX_BACKOFF)
            record.image_retry_at = time.monotonic() + record.image_backoff
            self._fail_waiting(worker, record, "ErrImagePull", message)
            await asyncio.sleep(min(ERR_IMAGE_PULL_VISIBLE, record.image_backoff / 2))

    def _fail_waiting(
        self, worker: PodWorker, record: ContainerRecord, reason: str, message: str,
        *, error: str | None = None,
    ) -> None:
        """Leave the container waiting in ``reason``, with a Failed event ``Error: <error>``.

        As in kuberuntime's ``startContainer``, the event names the error: the image puller's
        errors are their reason (``Error: ErrImagePull``), while a configuration or create
        failure is its message (``Error: secret "x" not found``) -- ``error`` then.
        """
        self._event(worker, "Warning", "Failed", f"Error: {error or reason}")
        record.state = {"waiting": {"reason": reason, "message": message}}
        self._write_status(worker)

    async def _start_and_wait(self, worker: PodWorker, record: ContainerRecord) -> int | None:
        """Create, start and wait for one run; None when it could not be created."""
        spec = record.spec
        try:
            env = self.env.container_env(worker.pod, spec)
            volumes = self._volumes(worker, spec)
            user = _run_as(worker, spec)
        except ContainerConfigError as exc:
            self._fail_waiting(worker, record, "CreateContainerConfigError", str(exc),
                               error=str(exc))
            return None
        argv = [expand(a, env) for a in (spec.get("command") or []) + (spec.get("args") or [])]
        if not argv:
            self._fail_waiting(worker, record, "CreateContainerError", NO_COMMAND,
                               error=NO_COMMAND)
            await asyncio.Event().wait()
        if "terminated" in record.state:
            record.last_state = {"terminated": record.state["terminated"]}
        record.runs += 1
        record.container_id = "containerd://" + secrets.token_hex(32)
        self._event(worker, "Normal", "Created", f"Created container {record.name}")
        try:
            container = await self.runtime.start_container(
                worker.uid, record.name, argv, env, spec.get("workingDir"), hostname=worker.name,
                volumes=volumes, user=user,
            )
        except ContainerStartError as exc:
            message = RUNC_PREFIX + f"{exc}: unknown"
            self._event(worker, "Warning", "Failed", f"Error: {message}")
            record.state = {"terminated": {
                "exitCode": 128, "reason": "StartError", "message": message,
                "startedAt": NEVER_STARTED, "finishedAt": clock.rfc3339(),
                "containerID": record.container_id,
            }}
            self._after_exit(worker)
            return 128
        record.container = container
        record.previous_log_path, record.log_path = record.log_path, container.log_path
        started_at = clock.rfc3339()
        record.state = {"running": {"startedAt": started_at}}
        self._event(worker, "Normal", "Started", f"Started container {record.name}")
        self._write_status(worker)
        exit_code = await container.wait()
        record.state = {"terminated": {
            "exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": started_at, "finishedAt": clock.rfc3339(),
            "containerID": record.container_id,
        }}
        self._after_exit(worker)
        return exit_code

    def _after_exit(self, worker: PodWorker) -> None:
        worker.terminal = pod_phase(worker) in ("Succeeded", "Failed")
        if worker.terminal:
            worker.phase = pod_phase(worker)
        self._write_status(worker)

    async def _stop_all(self, worker: PodWorker, grace: float) -> None:
        running = [r for r in worker.records.values() if r.container and r.container.running]
        for record in running:
            self._event(worker, "Normal", "Killing", f"Stopping container {record.name}")
        await asyncio.gather(*(r.container.stop(grace) for r in running if r.container))
        for record in running:
            assert record.container is not None
            code = record.container.exit_code or 0
            started = record.state.get("running", {}).get("startedAt", NEVER_STARTED)
            record.state = {"terminated": {
                "exitCode": code, "reason": "Completed" if code == 0 else "Error",
                "startedAt": started, "finishedAt": clock.rfc3339(),
                "containerID": record.container_id,
            }}

    async def _deadline_exceeded(self, worker: PodWorker) -> None:
        self._event(worker, "Warning", "DeadlineExceeded", DEADLINE_MESSAGE)
        grace = worker.pod["spec"].get("terminationGracePeriodSeconds", 30)
        await self._stop_all(worker, grace)
        worker.phase, worker.terminal = "Failed", True
        worker.reason, worker.message = "DeadlineExceeded", DEADLINE_MESSAGE
        self._write_status(worker)

    async def _terminate(self, worker: PodWorker, pod: dict[str, Any] | None) -> None:
        """Graceful deletion: stop containers, report, then finalize the deletion."""
        meta = (pod or worker.pod)["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = worker.pod["spec"].get("terminationGracePeriodSeconds", 30)
        await self._stop_all(worker, grace)
        if pod is not None:
            if not worker.terminal:
                ran = [r for r in worker.records.values() if "terminated" in r.state]
                ok = bool(ran) and all(r.state["terminated"]["exitCode"] == 0 for r in ran)
                worker.phase, worker.terminal = ("Succeeded" if ok else "Failed"), True
                self._write_status(worker)
            with contextlib.suppress(errors.ApiError):
                self.api.delete(PODS, worker.namespace, worker.name, grace_period_seconds=0)
        self.runtime.cleanup(worker.uid)

    # -- reporting -----------------------------------------------------------------------

    def _write_status(self, worker: PodWorker) -> None:
        """Write ``pods/status`` from the worker's state (gone pods are not written)."""
        pod = self._fetch(worker)
        if pod is None:
            return
        if not worker.terminal:
            worker.phase = pod_phase(worker)
        pod["status"] = api_pod_status(worker, pod, self.host_ip)
        try:
            worker.pod = self.api.update(PODS, pod, subresource="status")
        except errors.ApiError as exc:
            if exc.code != 404:
                raise

    def _event(self, worker: PodWorker, type_: str, reason: str, message: str) -> None:
        self.api.record_event(worker.pod, type_, reason, message, "kubelet")

    # -- volumes -------------------------------------------------------------------------

    def _volumes(self, worker: PodWorker, spec: Mapping[str, Any]) -> list[Mount]:
        """The container's volumeMounts whose volumes the devcluster can provide."""
        volumes = {v["name"]: v for v in worker.pod["spec"].get("volumes") or []}
        mounts = []
        for mount in spec.get("volumeMounts") or []:
            volume = volumes.get(mount.get("name", ""))
            source = self._volume_dir(worker, volume) if volume else None
            if source is None:
                continue
            if mount.get("subPath"):
                source = source / mount["subPath"]
                source.mkdir(parents=True, exist_ok=True)
            read_only = bool(mount.get("readOnly")) or bool(
                volume.get("persistentVolumeClaim", {}).get("readOnly"))
            mounts.append(Mount(source, mount["mountPath"], read_only))
        return mounts

    def _volume_dir(self, worker: PodWorker, volume: Mapping[str, Any]) -> Path | None:
        if "emptyDir" in volume:
            path = self.runtime.root_dir / worker.uid / "volumes" / volume["name"]
        elif "persistentVolumeClaim" in volume:
            name = volume["persistentVolumeClaim"].get("claimName", "")
            claim = self.api.get_or_none(CLAIMS, worker.namespace, name)
            if claim is None:
                raise ContainerConfigError(f'persistentvolumeclaim "{name}" not found')
            bound = (claim.get("spec") or {}).get("volumeName")
            if not bound:
                raise ContainerConfigError(f'persistentvolumeclaim "{name}" is not bound')
            path = claim_dir(self.runtime.root_dir, bound)
        else:
            return None
        path.mkdir(parents=True, exist_ok=True)
        return path


def _run_as(worker: PodWorker, spec: Mapping[str, Any]) -> tuple[int, int] | None:
    """(runAsUser, runAsGroup) for the container, after the kubelet's runAsNonRoot check."""
    pod_context = worker.pod["spec"].get("securityContext") or {}
    context = spec.get("securityContext") or {}

    def setting(key: str) -> Any:
        return context[key] if context.get(key) is not None else pod_context.get(key)

    uid, gid = setting("runAsUser"), setting("runAsGroup")
    pod = f"{worker.name}_{worker.namespace}({worker.uid})"
    if setting("runAsNonRoot"):
        if uid == 0:
            raise ContainerConfigError("container's runAsUser breaks non-root policy "
                                       f'(pod: "{pod}", container: {spec["name"]})')
        if uid is None:  # images here have no USER: they run as root
            raise ContainerConfigError("container has runAsNonRoot and image will run as root "
                                       f'(pod: "{pod}", container: {spec["name"]})')
    if uid is None:
        return None
    return int(uid), int(gid if gid is not None else 0)


def _report_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("kubelet pod lifecycle failed", exc_info=task.exception())
