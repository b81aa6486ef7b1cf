"""The devcluster's kubelet: runs the pods bound to its node and reports them like a kubelet.

One worker task per pod drives the pod's lifecycle the way ``kubelet.syncPod`` does and
writes ``pods/status`` after every change, with the kubelet's conditions, container
states, reasons and event wording, because sandboxkit's diagnostics, widgets and the
troubleshooting notebook read exactly those. Where the devcluster must differ:

- Images are looked up in an :class:`~.images.ImageTable`; there is no image
  ``ENTRYPOINT``/``CMD``: ``command`` (then ``args``) is the argv, ``args`` alone is the
  argv, and a container with neither waits in ``CreateContainerError`` with a message
  saying so (a real node would run the image's default command).
- Back-offs start short (``image_backoff``/``crash_backoff``, 2 s by default instead of the
  kubelet's 10 s) and double up to 300 s, so failures show up in tests within seconds.
- Every pod shares the host's network: ``podIP`` and ``hostIP`` are the node's address.
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
import base64
import contextlib
import logging
import math
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from . import clock, errors, resources
from .api import Api
from .images import ImageTable, normalize
from .podlogs import LogOptions, read_logs
from .qos import qos_class
from .quantity import parse_quantity
from .resources import ResourceType
from .runtime import Container, ContainerRuntime, ContainerStartError, ExecProcess, Mount
from .volumes import claim_dir

__all__ = ["Kubelet", "expand", "go_duration", "qos_class"]

log = logging.getLogger(__name__)

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


def _rt(plural: str) -> ResourceType:
    rt = resources.lookup("", "v1", plural)
    assert rt is not None, plural
    return rt


# -- small Kubernetes helpers ----------------------------------------------------------

def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: unknown references stay, ``$$`` escapes ``$``."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "$" or i + 1 >= len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = text.find(")", i + 2)
            if end < 0:
                out.append(text[i:])
                break
            name = text[i + 2 : end]
            out.append(env.get(name, f"$({name})"))
            i = end + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


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


def _names(names: list[str]) -> str:
    return "[" + " ".join(names) + "]"


def _default_pull_policy(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    if "@" in image:
        return "IfNotPresent"
    return "IfNotPresent" if ":" in last and not last.endswith(":latest") else "Always"


class _ConfigError(Exception):
    """A container's environment cannot be built (CreateContainerConfigError)."""


# -- per-pod state ---------------------------------------------------------------------


@dataclass
class _ContainerRecord:
    """What the kubelet knows of one container of a pod across its restarts."""

    spec: dict[str, Any]
    init: bool = False
    state: dict[str, Any] = field(
        default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}}
    )
    last_state: dict[str, Any] = field(default_factory=dict)
    runs: int = 0
    container: Container | None = None
    container_id: str = ""
    image_backoff: float = 0.0
    image_retry_at: float = 0.0
    crash_backoff: float = 0.0
    log_path: Path | None = None
    previous_log_path: Path | None = None

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def running(self) -> bool:
        return "running" in self.state

    def status(self) -> dict[str, Any]:
        image = self.spec.get("image", "")
        with contextlib.suppress(ValueError):
            if self.container_id:
                image = normalize(image)
        entry: dict[str, Any] = {
            "name": self.name,
            "state": self.state,
            "lastState": self.last_state,
            "ready": self.running,
            "restartCount": max(self.runs - 1, 0),
            "image": image,
            "imageID": ImageTable.image_id(image) if self.container_id else "",
            "started": self.running,
        }
        if self.container_id:
            entry["containerID"] = self.container_id
        return entry


@dataclass
class _PodWorker:
    uid: str
    namespace: str
    name: str
    pod: dict[str, Any]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    records: dict[str, _ContainerRecord] = field(default_factory=dict)
    start_time: str | None = None
    sandbox_ready: bool = False
    phase: str = "Pending"
    reason: str | None = None
    message: str | None = None
    terminal: bool = False


class Kubelet:
    """Runs the pods whose ``spec.nodeName`` is ``node_name``."""

    def __init__(
        self,
        api: Api,
        runtime: ContainerRuntime,
        images: ImageTable,
        node_name: str = "devcluster-node",
        *,
        host_ip: str = "127.0.0.1",
        api_host: str = "127.0.0.1",
        api_port: int = 443,
        image_backoff: float = 2.0,
        crash_backoff: float = 2.0,
    ) -> None:
        self.api = api
        self.runtime = runtime
        self.images = images
        self.node_name = node_name
        self.host_ip = host_ip
        self.api_host = api_host
        self.api_port = api_port
        self.image_backoff = image_backoff
        self.crash_backoff = crash_backoff
        self._pods = _rt("pods")
        self._workers: dict[str, _PodWorker] = {}
        self._present: set[str] = set()
        self._started = False

    # -- wiring --------------------------------------------------------------------------

    def start(self) -> None:
        """Subscribe to changes and pick up pods already bound to this node."""
        if self._started:
            return
        self._started = True
        self.api.subscribe(self._on_change)
        pods, _ = self.api.list(self._pods)
        for pod in pods:
            self._on_change("ADDED", self._pods, pod)

    async def stop(self) -> None:
        """Stop reconciling (containers keep running until ``runtime.shutdown()``)."""
        self._started = False
        tasks = [w.task for w in self._workers.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()

    def _on_change(self, event_type: str, rt: ResourceType, obj: dict[str, Any]) -> None:
        if not self._started or rt.plural != "pods" or rt.group != "":
            return
        if obj.get("spec", {}).get("nodeName") != self.node_name:
            return
        meta = obj["metadata"]
        uid = meta.get("uid") or f"{meta['namespace']}/{meta['name']}"
        worker = self._workers.get(uid)
        if worker is None:
            if event_type == "DELETED":
                return
            worker = _PodWorker(uid, meta["namespace"], meta["name"], obj)
            self._workers[uid] = worker
            worker.task = asyncio.get_running_loop().create_task(self._run(worker))
        worker.pod = obj
        worker.wake.set()

    # -- the pod worker ------------------------------------------------------------------

    def _fetch(self, worker: _PodWorker) -> dict[str, Any] | None:
        try:
            pod = self.api.get(self._pods, worker.namespace, worker.name)
        except errors.ApiError as exc:
            if exc.code == 404:
                return None
            raise
        if pod["metadata"].get("uid", worker.uid) != worker.uid and pod["metadata"].get("uid"):
            return None  # a new pod with the same name: ours is gone
        worker.pod = pod
        return pod

    async def _run(self, worker: _PodWorker) -> None:
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

    async def _lifecycle(self, worker: _PodWorker) -> None:
        pod = worker.pod
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            worker.terminal = True
            return
        spec = pod["spec"]
        for c in spec.get("initContainers", []):
            worker.records[c["name"]] = _ContainerRecord(c, init=True)
        for c in spec.get("containers", []):
            worker.records[c["name"]] = _ContainerRecord(c)
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

    async def _run_containers(self, worker: _PodWorker) -> None:
        for record in [r for r in worker.records.values() if r.init]:
            if await self._supervise(worker, record) != 0:
                return  # restartPolicy Never and an init container failed: pod Failed
        mains = [r for r in worker.records.values() if not r.init]
        await asyncio.gather(*(self._supervise(worker, r) for r in mains))

    async def _supervise(self, worker: _PodWorker, record: _ContainerRecord) -> int:
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

    async def _crash_backoff(self, worker: _PodWorker, record: _ContainerRecord) -> None:
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

    async def _ensure_image(self, worker: _PodWorker, record: _ContainerRecord) -> bool:
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
        self, worker: _PodWorker, record: _ContainerRecord, reason: str, message: str
    ) -> None:
        self._event(worker, "Warning", "Failed", f"Error: {reason}")
        record.state = {"waiting": {"reason": reason, "message": message}}
        self._write_status(worker)

    async def _start_and_wait(self, worker: _PodWorker, record: _ContainerRecord) -> int | None:
        """Create, start and wait for one run; None when it could not be created."""
        spec = record.spec
        try:
            env = self._container_env(worker, spec)
            volumes = self._volumes(worker, spec)
            user = self._run_as(worker, spec)
        except _ConfigError as exc:
            self._fail_waiting(worker, record, "CreateContainerConfigError", str(exc))
            return None
        argv = [expand(a, env) for a in (spec.get("command") or []) + (spec.get("args") or [])]
        if not argv:
            self._fail_waiting(worker, record, "CreateContainerError", NO_COMMAND)
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

    def _after_exit(self, worker: _PodWorker) -> None:
        worker.terminal = self._phase(worker) in ("Succeeded", "Failed")
        if worker.terminal:
            worker.phase = self._phase(worker)
        self._write_status(worker)

    async def _stop_all(self, worker: _PodWorker, grace: float) -> None:
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

    async def _deadline_exceeded(self, worker: _PodWorker) -> None:
        self._event(worker, "Warning", "DeadlineExceeded", DEADLINE_MESSAGE)
        grace = worker.pod["spec"].get("terminationGracePeriodSeconds", 30)
        await self._stop_all(worker, grace)
        worker.phase, worker.terminal = "Failed", True
        worker.reason, worker.message = "DeadlineExceeded", DEADLINE_MESSAGE
        self._write_status(worker)

    async def _terminate(self, worker: _PodWorker, pod: dict[str, Any] | None) -> None:
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
                self.api.delete(self._pods, worker.namespace, worker.name,
                                grace_period_seconds=0)
        self.runtime.cleanup(worker.uid)

    # -- status --------------------------------------------------------------------------

    def _phase(self, worker: _PodWorker) -> str:
        records = list(worker.records.values())
        inits = [r for r in records if r.init]
        if any(r.state.get("terminated", {}).get("exitCode", 0) != 0
               for r in inits) and worker.pod["spec"].get("restartPolicy") == "Never":
            return "Failed"
        if any("terminated" not in r.state or r.state["terminated"]["exitCode"] != 0
               for r in inits):
            return "Pending"
        waiting = running = stopped = succeeded = 0
        for r in records:
            if r.init:
                continue
            if "running" in r.state:
                running += 1
            elif "terminated" in r.state:
                stopped += 1
                succeeded += r.state["terminated"]["exitCode"] == 0
            elif r.last_state.get("terminated"):
                stopped += 1
            else:
                waiting += 1
        policy = worker.pod["spec"].get("restartPolicy", "Always")
        if waiting:
            return "Pending"
        if running:
            return "Running"
        if policy == "Always" or (policy == "OnFailure" and stopped != succeeded):
            return "Running"
        return "Succeeded" if stopped == succeeded else "Failed"

    def _conditions(self, worker: _PodWorker, old: list[dict[str, Any]]) -> list[dict[str, Any]]:
        previous = {c.get("type"): c for c in old}
        now = clock.rfc3339()

        def cond(type_: str, ok: bool, reason: str | None = None,
                 message: str | None = None) -> dict[str, Any]:
            status = "True" if ok else "False"
            before = previous.get(type_)
            entry: dict[str, Any] = {"type": type_, "status": status, "lastProbeTime": None}
            moved = before is None or before.get("status") != status
            entry["lastTransitionTime"] = now if moved else before.get("lastTransitionTime", now)
            if not ok and reason:
                entry["reason"] = reason
                if message:
                    entry["message"] = message
            return entry

        records = list(worker.records.values())
        pending_init = [r.name for r in records if r.init and not (
            "terminated" in r.state and r.state["terminated"]["exitCode"] == 0)]
        unready = [r.name for r in records if not r.init and not r.running]
        if worker.terminal:
            ready_reason, ready_message = "PodCompleted", None
        else:
            ready_reason = "ContainersNotReady"
            ready_message = f"containers with unready status: {_names(unready)}"
        conditions = [
            cond("PodReadyToStartContainers", worker.sandbox_ready and not worker.terminal),
            cond("Initialized", not pending_init, "ContainersNotInitialized",
                 f"containers with incomplete status: {_names(pending_init)}"),
            cond("Ready", not unready and not worker.terminal, ready_reason,
                 None if worker.terminal else f"containers with unready status: "
                 f"{_names(unready)}"),
            cond("ContainersReady", not unready and not worker.terminal, ready_reason,
                 ready_message),
        ]
        scheduled = previous.get("PodScheduled") or cond("PodScheduled", True)
        return [*conditions, scheduled]

    def _write_status(self, worker: _PodWorker) -> None:
        pod = self._fetch(worker)
        if pod is None:
            return
        status = dict(pod.get("status") or {})
        if not worker.terminal:
            worker.phase = self._phase(worker)
        status["phase"] = worker.phase
        status["conditions"] = self._conditions(worker, status.get("conditions") or [])
        status["hostIP"] = self.host_ip
        status["hostIPs"] = [{"ip": self.host_ip}]
        if worker.sandbox_ready:
            status["podIP"] = self.host_ip
            status["podIPs"] = [{"ip": self.host_ip}]
        status["startTime"] = status.get("startTime") or worker.start_time
        inits = [r.status() for r in worker.records.values() if r.init]
        if inits:
            status["initContainerStatuses"] = inits
        status["containerStatuses"] = [r.status() for r in worker.records.values() if not r.init]
        status["qosClass"] = qos_class(pod)
        for key, value in (("reason", worker.reason), ("message", worker.message)):
            if value:
                status[key] = value
        pod["status"] = status
        try:
            worker.pod = self.api.update(self._pods, pod, subresource="status")
        except errors.ApiError as exc:
            if exc.code != 404:
                raise

    def _event(self, worker: _PodWorker, type_: str, reason: str, message: str) -> None:
        self.api.record_event(worker.pod, type_, reason, message, "kubelet")

    # -- environment ---------------------------------------------------------------------

    def _service_env(self) -> dict[str, str]:
        host, port = self.api_host, str(self.api_port)
        url = f"tcp://{host}:{port}"
        return {
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": url,
            f"KUBERNETES_PORT_{port}_TCP": url,
            f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
            f"KUBERNETES_PORT_{port}_TCP_PORT": port,
            f"KUBERNETES_PORT_{port}_TCP_ADDR": host,
        }

    def _container_env(self, worker: _PodWorker, spec: Mapping[str, Any]) -> dict[str, str]:
        """The container's environment, as ``kubelet.makeEnvironmentVariables`` builds it."""
        pod, ns = worker.pod, worker.namespace
        env: dict[str, str] = {"HOSTNAME": worker.name, **self._service_env()}
        for source in spec.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                ref = source["configMapRef"]
                data = self._lookup("configmaps", ns, ref, "configmap")
            else:
                ref = source.get("secretRef", {})
                data = self._lookup("secrets", ns, ref, "secret")
            for key, value in (data or {}).items():
                env[prefix + key] = value
        for var in spec.get("env") or []:
            name = var["name"]
            if "valueFrom" not in var:
                env[name] = expand(var.get("value", ""), env)
                continue
            value = self._value_from(pod, spec, var["valueFrom"])
            if value is not None:
                env[name] = value
        return env

    # -- volumes and user ----------------------------------------------------------------

    def _volumes(self, worker: _PodWorker, spec: Mapping[str, Any]) -> list[Mount]:
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

    def _volume_dir(self, worker: _PodWorker, volume: Mapping[str, Any]) -> Path | None:
        if "emptyDir" in volume:
            path = self.runtime.root_dir / worker.uid / "volumes" / volume["name"]
        elif "persistentVolumeClaim" in volume:
            name = volume["persistentVolumeClaim"].get("claimName", "")
            try:
                claim = self.api.get(_rt("persistentvolumeclaims"), worker.namespace, name)
            except errors.ApiError as exc:
                if exc.code == 404:
                    raise _ConfigError(f'persistentvolumeclaim "{name}" not found') from exc
                raise
            bound = (claim.get("spec") or {}).get("volumeName")
            if not bound:
                raise _ConfigError(f'persistentvolumeclaim "{name}" is not bound')
            path = claim_dir(self.runtime.root_dir, bound)
        else:
            return None
        path.mkdir(parents=True, exist_ok=True)
        return path

    @staticmethod
    def _run_as(worker: _PodWorker, spec: Mapping[str, Any]) -> tuple[int, int] | None:
        """(runAsUser, runAsGroup) for the container, after the kubelet's runAsNonRoot check."""
        pod_context = worker.pod["spec"].get("securityContext") or {}
        context = spec.get("securityContext") or {}

        def setting(key: str) -> Any:
            return context[key] if context.get(key) is not None else pod_context.get(key)

        uid, gid = setting("runAsUser"), setting("runAsGroup")
        pod = f"{worker.name}_{worker.namespace}({worker.uid})"
        if setting("runAsNonRoot"):
            if uid == 0:
                raise _ConfigError("container's runAsUser breaks non-root policy "
                                   f'(pod: "{pod}", container: {spec["name"]})')
            if uid is None:  # images here have no USER: they run as root
                raise _ConfigError("container has runAsNonRoot and image will run as root "
                                   f'(pod: "{pod}", container: {spec["name"]})')
        if uid is None:
            return None
        return int(uid), int(gid if gid is not None else 0)

    def _lookup(
        self, plural: str, ns: str, ref: Mapping[str, Any], what: str
    ) -> dict[str, str] | None:
        try:
            obj = self.api.get(_rt(plural), ns, ref.get("name", ""))
        except errors.ApiError as exc:
            if exc.code == 404 and ref.get("optional"):
                return None
            if exc.code == 404:
                raise _ConfigError(f'{what} "{ref.get("name", "")}" not found') from exc
            raise
        data = dict(obj.get("data") or {})
        if plural == "secrets":
            return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
        data.update({k: base64.b64decode(v).decode(errors="replace")
                     for k, v in (obj.get("binaryData") or {}).items()})
        return data

    def _value_from(
        self, pod: Mapping[str, Any], spec: Mapping[str, Any], source: Mapping[str, Any]
    ) -> str | None:
        ns = pod["metadata"]["namespace"]
        for key, plural, kind, what in (("configMapKeyRef", "configmaps", "ConfigMap", "configmap"),
                                         ("secretKeyRef", "secrets", "Secret", "secret")):
            if key in source:
                ref = source[key]
                data = self._lookup(plural, ns, ref, what)
                if data is None:
                    return None
                if ref["key"] not in data:
                    if ref.get("optional"):
                        return None
                    raise _ConfigError(
                        f"couldn't find key {ref['key']} in {kind} {ns}/{ref.get('name', '')}"
                    )
                return data[ref["key"]]
        if "fieldRef" in source:
            return self._field(pod, source["fieldRef"]["fieldPath"])
        if "resourceFieldRef" in source:
            return self._resource_field(spec, source["resourceFieldRef"])
        return None

    def _field(self, pod: Mapping[str, Any], path: str) -> str:
        meta, spec = pod["metadata"], pod["spec"]
        match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if match:
            return (meta.get(match.group(1)) or {}).get(match.group(2), "")
        simple = {
            "metadata.name": meta.get("name", ""),
            "metadata.namespace": meta.get("namespace", ""),
            "metadata.uid": meta.get("uid", ""),
            "spec.nodeName": spec.get("nodeName", ""),
            "spec.serviceAccountName": spec.get("serviceAccountName", ""),
            "status.hostIP": self.host_ip,
            "status.hostIPs": self.host_ip,
            "status.podIP": self.host_ip,
            "status.podIPs": self.host_ip,
        }
        if path not in simple:
            raise _ConfigError(f"unsupported fieldPath: {path}")
        return simple[path]

    def _resource_field(self, spec: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
        kind, _, resource = ref["resource"].partition(".")
        res = (spec.get("resources") or {})
        value = (res.get(kind) or {}).get(resource)
        if value is None and kind == "requests":
            value = (res.get("limits") or {}).get(resource)
        amount = parse_quantity(value) if value is not None else _allocatable(resource)
        divisor = parse_quantity(ref.get("divisor") or "1")
        return str(math.ceil(amount / divisor))

    # -- pods/exec and pods/log ----------------------------------------------------------

    @staticmethod
    def _pick_container(pod: Mapping[str, Any], container: str | None) -> str:
        """The API server's container checks for exec and log, with its wording."""
        name = pod["metadata"]["name"]
        spec = pod.get("spec", {})
        mains = [c["name"] for c in spec.get("containers", [])]
        inits = [c["name"] for c in spec.get("initContainers", [])]
        if not container:
            if len(mains) == 1:
                return mains[0]
            message = f"a container name must be specified for pod {name}, choose one of: " \
                      f"{_names(mains)}"
            if inits:
                message += f" or one of the init containers: {_names(inits)}"
            raise errors.bad_request(message)
        if container not in mains + inits:
            raise errors.bad_request(f"container {container} is not valid for pod {name}")
        return container

    def _record(self, pod: Mapping[str, Any], container: str) -> _ContainerRecord | None:
        worker = self._workers.get(pod["metadata"].get("uid", ""))
        return worker.records.get(container) if worker else None

    def check_exec(self, pod: Mapping[str, Any], container: str | None) -> str:
        """The checks ``pods/exec`` makes before the stream is upgraded; the container."""
        container = self._pick_container(pod, container)
        name = pod["metadata"]["name"]
        if not pod.get("spec", {}).get("nodeName"):
            raise errors.bad_request(f"pod {name} does not have a host assigned")
        phase = pod.get("status", {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            raise errors.bad_request(
                f"cannot exec into a container in a completed pod; current phase is {phase}"
            )
        return container

    async def start_exec(
        self, pod: Mapping[str, Any], container: str, argv: list[str], tty: bool = False
    ) -> ExecProcess:
        """Start ``argv`` in the (checked) container, joining its namespaces.

        A container that is not running is the 500 the API server reports when the kubelet
        refuses the stream; a command that cannot start raises the runtime's
        :class:`ContainerStartError`, which the exec stream reports in runc's wording.
        """
        try:
            return await self.runtime.exec(pod["metadata"].get("uid", ""), container, argv,
                                           tty=tty)
        except LookupError:
            raise _internal(
                f'unable to upgrade connection: container not found ("{container}")'
            ) from None

    def log_path(
        self, pod: Mapping[str, Any], container: str | None, previous: bool = False
    ) -> Path | None:
        """The log file ``pods/log`` reads; None when the pod has no node (empty body)."""
        container = self._pick_container(pod, container)
        name = pod["metadata"]["name"]
        if not pod.get("spec", {}).get("nodeName"):
            return None
        record = self._record(pod, container)
        prefix = f'container "{container}" in pod "{name}"'
        if previous:
            if record is None or record.previous_log_path is None:
                raise errors.bad_request(f"previous terminated {prefix} not found")
            return record.previous_log_path
        if record is None:
            raise errors.bad_request(f"{prefix} is waiting to start: ContainerCreating")
        if record.log_path is not None:
            return record.log_path
        reason = record.state.get("waiting", {}).get("reason", "ContainerCreating")
        why = {"ErrImagePull": "image can't be pulled",
               "ImagePullBackOff": "trying and failing to pull image"}.get(reason, reason)
        if "terminated" in record.state:
            raise errors.bad_request(f"{prefix} is terminated")
        raise errors.bad_request(f"{prefix} is waiting to start: {why}")

    def container_running(self, pod: Mapping[str, Any], container: str) -> bool:
        record = self._record(pod, container)
        return bool(record and record.container and record.container.running)

    def stream_logs(
        self, pod: Mapping[str, Any], container: str | None, options: LogOptions,
        previous: bool = False,
    ) -> AsyncIterator[bytes]:
        """``pods/log`` in one call: validation errors raise here, output streams after."""
        path = self.log_path(pod, container, previous)
        if path is None or not path.exists():
            return _empty()
        name = self._pick_container(pod, container)
        running: Callable[[], bool] | None = None
        if options.follow and not previous:
            def running() -> bool:
                return self.container_running(pod, name)
        return read_logs(path, options, running)


async def _empty() -> AsyncIterator[bytes]:
    for chunk in ():
        yield chunk


def _report_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("kubelet pod lifecycle failed", exc_info=task.exception())


def _internal(message: str) -> errors.ApiError:
    """``apierrors.NewInternalError``: 500 with the cause repeated in details."""
    return errors.ApiError(500, "InternalError", f"Internal error occurred: {message}",
                           {"causes": [{"message": message}]})


def _allocatable(resource: str) -> Decimal:
    """Node capacity used when a resourceFieldRef names a limit the container lacks."""
    if resource == "cpu":
        return Decimal(os.cpu_count() or 1)
    if resource == "memory":
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    return Decimal(line.split()[1]) * 1024
    return Decimal(0)
