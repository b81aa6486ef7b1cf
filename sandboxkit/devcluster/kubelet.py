"""The devcluster's kubelet: runs the pods bound to its node and serves their exec and logs.

It is laid out as the upstream kubelet is: this module is the sync loop's wiring -- it
watches the pods whose ``spec.nodeName`` is its node and hands every change to the pod's
worker -- and the kubelet server's side of ``pods/exec`` and ``pods/log``. The jobs live in
their own modules:

- :mod:`.podworker`: one task per pod drives its lifecycle (images, containers, restarts
  with back-off, deadline, graceful termination and deletion) and records the events;
- :mod:`.podstatus`: the ``pods/status`` generated from a worker's state (phase,
  conditions, container statuses);
- :mod:`.podenv`: containers' environments (``env``, ``envFrom``, ``valueFrom``, the
  downward API).

Each module's docstring says where the devcluster differs from a node at that job.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from . import errors
from .api import Api
from .images import ImageTable
from .podenv import EnvResolver
from .podlogs import LogOptions, read_logs
from .podstatus import ContainerRecord, bracketed
from .podworker import PodWorkers
from .resources import ResourceType, require
from .runtime import ContainerRuntime, ExecProcess

__all__ = ["Kubelet"]

PODS = require("", "v1", "pods")


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
        self.node_name = node_name
        self._pod_workers = PodWorkers(
            api, runtime, images, EnvResolver(api, host_ip, api_host, api_port),
            host_ip=host_ip, image_backoff=image_backoff, crash_backoff=crash_backoff,
        )
        self._started = False

    # -- the sync loop -------------------------------------------------------------------

    def start(self) -> None:
        """Subscribe to changes and pick up pods already bound to this node."""
        if self._started:
            return
        self._started = True
        self.api.subscribe(self._on_change)
        pods, _ = self.api.list(PODS)
        for pod in pods:
            self._on_change("ADDED", PODS, pod)

    async def stop(self) -> None:
        """Stop reconciling (containers keep running until ``runtime.shutdown()``)."""
        self._started = False
        await self._pod_workers.stop()

    def _on_change(self, event_type: str, rt: ResourceType, obj: dict[str, Any]) -> None:
        if not self._started or rt.plural != "pods" or rt.group != "":
            return
        if obj.get("spec", {}).get("nodeName") != self.node_name:
            return
        self._pod_workers.update_pod(event_type, obj)

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
                      f"{bracketed(mains)}"
            if inits:
                message += f" or one of the init containers: {bracketed(inits)}"
            raise errors.bad_request(message)
        if container not in mains + inits:
            raise errors.bad_request(f"container {container} is not valid for pod {name}")
        return container

    def _record(self, pod: Mapping[str, Any], container: str) -> ContainerRecord | None:
        return self._pod_workers.record(pod["metadata"].get("uid", ""), container)

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


def _internal(message: str) -> errors.ApiError:
    """``apierrors.NewInternalError``: 500 with the cause repeated in details."""
    return errors.ApiError(500, "InternalError", f"Internal error occurred: {message}",
                           {"causes": [{"message": message}]})
