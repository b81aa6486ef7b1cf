"""DockerSandbox: the Sandbox contract on a Docker engine, for laptops without a cluster.

The container mirrors the Kubernetes sandbox's pod: the configured image idling on
``tail -f /dev/null``, labelled ``app=ci-fixer-sandbox`` plus the sandbox id, with the
config's env, workdir and limits (cpu as ``nano_cpus``, memory as ``mem_limit`` without
swap, requests as CPU shares and a memory reservation, as the kubelet maps them), no network
unless ``allow_egress`` or ``docker_network`` says otherwise, and removed by the daemon once
it stops (``auto_remove``). ``active_deadline_seconds`` bounds its life as it bounds the
Job's: ``tail`` runs under ``timeout`` with Docker's init as PID 1 (a process cannot signal
its namespace's PID 1, so ``timeout`` itself must not be it); an image without ``timeout``
fails to start with a message saying so.

Commands run through the exec API under the shared wrapper (:mod:`..wrapper`): Docker
cannot kill an exec'd process either, so a timeout or Ctrl-C kills the command's process
group from a second exec. Output is Docker's multiplexed stream (8-byte frame headers),
stdin ends with a half-close of the hijacked connection, and the exit code is the one
``exec inspect`` reports, never one inferred from the stream. Files travel as tar archives
through the daemon's archive endpoints (no ``tar`` needed in the image).

Everything goes through the Docker SDK for Python; ``DOCKER_HOST`` (and ``DOCKER_TLS_VERIFY``
/ ``DOCKER_CERT_PATH``) choose the daemon, as for the ``docker`` CLI.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import shlex
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import IO, Any, Self

import docker
from docker import errors as docker_errors

from .. import metrics
from ..config import SANDBOX_APP_LABEL, SandboxConfig, quantity_value
from ..errors import (
    BackendUnavailable,
    CommandFailed,
    CommandTimeout,
    ConfigError,
    ExecProtocolError,
    ImagePullError,
    SandboxError,
    SandboxGone,
    SandboxNotFound,
    SandboxStartupError,
)
from ..manifests import (
    ID_LABEL,
    OWNER_ANNOTATION,
    RESTRICTED_UID,
    new_sandbox_name,
    owner_description,
)
from ..models import CommandResult, SandboxStatus
from .archive import extract, pack, remote_split, upload_source
from .base import ArgvSandbox, OutputCallback, ProgressCallback
from .wrapper import OutputStream, kill_argv, marker_tag, new_nonce, wrap_argv

__all__ = ["DEADLINE_LABEL", "DockerSandbox", "docker_client"]

DEADLINE_LABEL = "sandboxkit.io/active-deadline-seconds"
"""Container label recording the deadline, so an attached sandbox can tell a deadline from
another death."""

KILL_DRAIN = 2.0  # after killing the command's group, seconds spent collecting its last output
DIE_WAIT = 5.0  # after an OOM kill, seconds to watch for the container's death
OOM_WAIT = 0.5  # after a command died of a signal, seconds to watch for an OOM kill
END_WAIT = 3.0  # after both end markers, seconds to wait for the daemon to close the stream
_START_WAIT = 1.0  # on interrupt, how long to wait for the start marker (the pgid)
_STDIN_CHUNK = 64 << 10
_SPOOL_MEMORY = 8 << 20
_STDOUT, _STDERR = 1, 2
_EVENT_REASONS = {"create": "Created", "start": "Started", "kill": "Killing", "die": "Died",
                  "oom": "OOMKilling", "destroy": "Deleted"}
_WARNING_EVENTS = {"die", "oom"}


def docker_client() -> docker.DockerClient:
    """A client for the daemon ``DOCKER_HOST`` names (default: the local socket); raises
    :class:`BackendUnavailable` naming where it looked when no daemon answers."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(max_pool_size=32)  # asks the daemon for its API version
    except docker_errors.DockerException as exc:
        raise BackendUnavailable(
            f"cannot reach a Docker daemon at {host} (DOCKER_HOST): {exc}. Start Docker "
            "(or dockerd), or set DOCKER_HOST to its socket, e.g. "
            "unix:///var/run/docker.sock; use execution_backend='kubernetes' or 'local' "
            "without Docker") from exc
    return client


class DockerSandbox(ArgvSandbox):
    """A sandbox in a Docker container; the same contract as :class:`KubernetesSandbox`.

    ``config`` is a base :class:`SandboxConfig`; keyword ``overrides`` set any of its fields.
    ``client`` reuses a configured ``docker.DockerClient``. Thread-safe: commands may run
    from several threads at once, each exec on its own connection.
    """

    def __init__(self, image: str | None = None, *, config: SandboxConfig | None = None,
                 client: docker.DockerClient | None = None, **overrides: Any) -> None:
        if image is not None:
            overrides["image"] = image
        overrides.setdefault("execution_backend", "docker")
        self.config = SandboxConfig.resolve(config, **overrides)
        if self.config.workspace_pvc is not None:
            raise ConfigError("workspace_pvc", self.config.workspace_pvc,
                              "a PersistentVolumeClaim needs execution_backend='kubernetes'",
                              "None")
        self._name = self.config.name or new_sandbox_name()
        self._client = client
        self._container: str | None = None  # the container id once created
        self._started_at = 0.0  # unix time the container was created
        self._ready = False
        self._torn_down = False
        self._user = ""  # the container's user ("uid:gid" or a name; "" is the image's root)
        self._init_lock = threading.Lock()
        self._lock = threading.Lock()

    # --- identity -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def client(self) -> docker.DockerClient:
        """The Docker client, connected on first use."""
        with self._lock:
            if self._client is None:
                self._client = docker_client()
            return self._client

    @property
    def container_id(self) -> str | None:
        return self._container

    def __repr__(self) -> str:
        state = ("torn down" if self._torn_down else "running" if self._ready
                 else "not started")
        return f"DockerSandbox({self._name!r}, image={self.config.image!r}, {state})"

    # --- lifecycle ------------------------------------------------------------------------

    def init(self, on_progress: ProgressCallback | None = None) -> Self:
        """Create and start the container; idempotent. Reports "created" and "running" to
        ``on_progress``. Raises ImagePullError when the image is neither present nor
        pullable, SandboxStartupError when the container does not start,
        BackendUnavailable without a daemon; a failed start removes the container unless
        ``keep_on_failure``."""
        with self._init_lock:
            if self._ready:
                return self
            if self._torn_down:
                raise SandboxError(f"sandbox {self._name} was torn down; create a new one")
            backend = self.config.execution_backend
            started = time.monotonic()
            try:
                container = self._create()
            except BaseException as exc:
                metrics.record_failed(backend, exc)
                raise
            metrics.record_created(backend)
            with self._lock:
                self._container = container.id
                self._started_at = time.time()
            if on_progress is not None:
                on_progress("created", f"container {self._name} ({container.short_id})")
            try:
                self._start(container)
            except BaseException as exc:  # Ctrl-C too: never leave a half-made sandbox
                metrics.record_failed(backend, exc)
                self._after_failed_start(exc)
                raise
            with self._lock:
                if self._torn_down:
                    raise SandboxGone(f"sandbox {self._name} was torn down during init()",
                                      reason="TornDown")
                self._ready = True
            metrics.record_started(backend, time.monotonic() - started)
            if on_progress is not None:
                on_progress("running", f"container {self._name} is running")
            return self

    def _create(self) -> Any:
        """Create the container, pulling the image first when it is not present (what
        ``imagePullPolicy: IfNotPresent`` does)."""
        config, client = self.config, self.client
        options = _container_options(config, self._name)
        try:
            return client.containers.create(config.image, **options)
        except docker_errors.ImageNotFound:
            pass
        except docker_errors.APIError as exc:
            if "invalid reference format" in str(exc):
                raise ImagePullError(
                    f"invalid image name {config.image!r}: {exc.explanation}",
                    image=config.image, sandbox=self._name, reason="InvalidImageName") from exc
            raise
        try:
            client.images.pull(config.image)
        except docker_errors.APIError as exc:
            raise ImagePullError(
                f"image {config.image} is not present on the Docker daemon and pulling it "
                f"failed: {exc.explanation or exc}. Check the name, `docker login` for a "
                "private registry, or build/load the image locally",
                image=config.image, sandbox=self._name, reason="ErrImagePull") from exc
        return client.containers.create(config.image, **options)

    def _start(self, container: Any) -> None:
        try:
            container.start()
        except docker_errors.APIError as exc:
            explanation = str(exc.explanation or exc)
            hint = ""
            if '"timeout"' in explanation:
                hint = (" The Docker backend runs `timeout ACTIVE_DEADLINE tail -f /dev/null` "
                        "to bound the container's life; use an image with coreutils or "
                        "busybox.")
            raise SandboxStartupError(
                f"container {self._name} did not start: {explanation}.{hint}",
                sandbox=self._name, reason="StartError") from exc
        container.reload()
        self._user = container.attrs["Config"].get("User") or ""
        if container.status != "running":
            raise SandboxStartupError(
                f"container {self._name} stopped right after starting (state "
                f"{container.status}); `docker logs {self._name}` may say why",
                sandbox=self._name, reason="StartError")

    def _after_failed_start(self, exc: BaseException) -> None:
        if self.config.keep_on_failure:
            exc.add_note(f"kept for debugging (keep_on_failure): docker inspect {self._name}; "
                         "delete it with teardown()")
            return
        with self._lock:
            self._torn_down = True
        try:
            self._remove()
        except Exception as cleanup:  # the startup failure is the error to report
            exc.add_note(f"removing container {self._name} also failed: {cleanup}")

    @classmethod
    def attach(cls, name: str, *, config: SandboxConfig | None = None,
               client: docker.DockerClient | None = None, **overrides: Any) -> DockerSandbox:
        """Take over a running sandbox container by name (after a kernel restart, from
        another process). Raises SandboxNotFound when no container has that name or it is
        not a sandbox, SandboxGone when it is no longer running."""
        client = client or docker_client()
        try:
            attrs = client.api.inspect_container(name)
        except docker_errors.NotFound as exc:
            raise SandboxNotFound(f"no sandbox container named {name}", name=name) from exc
        labels = attrs["Config"].get("Labels") or {}
        key, value = SANDBOX_APP_LABEL
        if labels.get(key) != value:
            raise SandboxNotFound(
                f"container {name} is not a sandbox (it has no {key}={value} label)", name=name)
        sandbox = cls(config=config, client=client, name=name, **overrides)
        if not attrs["State"].get("Running"):
            raise SandboxGone(f"sandbox {name} is not running ({attrs['State'].get('Status')})",
                              reason=_terminated_reason(attrs["State"]))
        deadline = labels.get(DEADLINE_LABEL, "")
        sandbox.config = dataclasses.replace(
            sandbox.config, image=attrs["Config"]["Image"],
            active_deadline_seconds=(int(deadline) if deadline.isdigit()
                                     else sandbox.config.active_deadline_seconds))
        sandbox._container = attrs["Id"]
        sandbox._user = attrs["Config"].get("User") or ""
        sandbox._started_at = _unix_time(attrs["Created"])
        sandbox._ready = True
        metrics.record_attached(sandbox.config.execution_backend)
        return sandbox

    @classmethod
    def list_sandboxes(cls, client: docker.DockerClient | None = None) -> list[SandboxStatus]:
        """Every sandbox container on the daemon (``app=ci-fixer-sandbox``), oldest first."""
        client = client or docker_client()
        key, value = SANDBOX_APP_LABEL
        found = client.api.containers(all=True, filters={"label": f"{key}={value}"})
        statuses = [_status(client.api.inspect_container(c["Id"]), []) for c in found]
        return sorted(statuses, key=lambda status: status.created)

    def teardown(self, wait: bool = False) -> None:
        """Kill and remove the container; idempotent. Removal is synchronous, so ``wait``
        only matters while the daemon's own auto-removal is in progress."""
        with self._lock:
            container, active = self._container, self._ready
            self._ready = False
            self._torn_down = True
        if active:
            metrics.record_stopped(self.config.execution_backend)
        if container is not None:
            self._remove(wait=wait)

    def _remove(self, wait: bool = True) -> None:
        api = self.client.api
        try:
            api.remove_container(self._container, force=True)
        except docker_errors.NotFound:
            return
        except docker_errors.APIError as exc:
            if exc.status_code != 409:  # 409: the daemon's auto-removal is under way
                raise
            if wait:
                with contextlib.suppress(docker_errors.NotFound):
                    api.wait(self._container, condition="removed")

    def status(self) -> SandboxStatus:
        """The container's state and its lifecycle events; ``job_phase`` "Missing" once
        it is gone."""
        api = self.client.api
        try:
            attrs = api.inspect_container(self._container or self._name)
        except docker_errors.NotFound:
            return SandboxStatus(name=self._name, namespace="", job_phase="Missing")
        labels = attrs["Config"].get("Labels") or {}
        if labels.get(ID_LABEL) != self._name:
            return SandboxStatus(name=self._name, namespace="", job_phase="Missing")
        return _status(attrs, self._events(attrs["Id"], _unix_time(attrs["Created"])))

    def _events(self, container: str, since: float) -> list[dict[str, Any]]:
        """The container's lifecycle events so far, as Kubernetes event dicts."""
        events = []
        stream = self.client.api.events(since=since - 1, until=time.time(),
                                        filters={"container": container, "type": "container"},
                                        decode=True)
        for event in stream:
            action = str(event.get("Action", "")).split(":")[0]
            if action not in _EVENT_REASONS:
                continue
            attributes = (event.get("Actor") or {}).get("Attributes") or {}
            message = f"container {action}"
            if "exitCode" in attributes:
                message += f" with exit code {attributes['exitCode']}"
            events.append({
                "type": "Warning" if action in _WARNING_EVENTS else "Normal",
                "reason": _EVENT_REASONS[action], "message": message, "count": 1,
                "time": _rfc3339(event.get("time", 0)), "object": f"container/{self._name}",
                "action": action, "unix": event.get("time", 0),
            })
        return events

    def _dying(self, since: float) -> bool:
        """Whether the container dies right after a command was killed by a signal: watched
        through the event stream for OOM_WAIT seconds (DIE_WAIT at the deadline), and for
        DIE_WAIT once the memory cgroup reported an OOM kill since ``since``."""
        at_deadline = time.time() >= self._started_at + self.config.active_deadline_seconds - 1
        seen = self._first_event(since, ["oom", "die"], DIE_WAIT if at_deadline else OOM_WAIT)
        if seen == "oom":
            seen = self._first_event(since, ["die"], DIE_WAIT)
        return seen == "die"

    def _first_event(self, since: float, actions: list[str], seconds: float) -> str | None:
        """The first of ``actions`` to happen to the container since ``since``, waiting up
        to ``seconds`` for one."""
        stream = self.client.api.events(
            since=since, until=time.time() + seconds, decode=True,
            filters={"container": self._container or "", "event": actions})
        try:
            event = next(iter(stream), None)
        finally:
            stream.close()
        return None if event is None else str(event.get("Action"))

    # --- commands -------------------------------------------------------------------------

    def exec_argv(
        self, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float | None = None,
        on_stdout: OutputCallback | None = None, on_stderr: OutputCallback | None = None,
        stdout_sink: IO[bytes] | None = None, output_limit: int | None = None,
        command_text: str | None = None,
    ) -> CommandResult:
        """Run ``argv`` as is (no shell) in the container, under the kill wrapper.

        ``timeout`` None means the config's ``command_timeout``. Raises CommandTimeout once
        the command is killed, SandboxGone (with the reason, OOMKilled included) when the
        container went away."""
        container = self._container
        if not self._ready or container is None:
            if self._torn_down:
                raise SandboxGone(f"sandbox {self._name} was torn down", reason="TornDown")
            raise SandboxError(f"sandbox {self._name} is not started: call init() first, "
                               "or use it in a `with` block")
        timeout = self.config.command_timeout if timeout is None else timeout
        limit = self.config.output_limit if output_limit is None else output_limit
        text = command_text if command_text is not None else shlex.join(argv)
        nonce = new_nonce()
        tag = marker_tag(nonce)
        session = _ExecSession(
            OutputStream(limit, on_stdout, stdout_sink, tag),
            OutputStream(limit, on_stderr, None, tag),
            kill=lambda kind, pid: self._kill(container, kind, pid))
        api = self.client.api
        started = time.monotonic()
        try:
            exec_id = api.exec_create(container, wrap_argv(argv, nonce, timeout=timeout),
                                      stdin=stdin is not None)["Id"]
            timed_out = session.run(api, exec_id, stdin,
                                    None if timeout is None else started + timeout)
            exit_code = _exit_code(api, exec_id, timed_out)
        except (docker_errors.APIError, ExecProtocolError, OSError) as exc:
            gone = self._gone(session.result(text, -1, started))
            if gone is None:
                raise
            raise gone from exc
        result = session.result(text, exit_code, started)
        if timed_out or session.watchdog_fired:
            raise CommandTimeout(text, timeout or 0.0, result)
        if exit_code >= 128:
            # Killed by a signal: by the command itself, or because the container is going
            # away under it -- then the result is not the command's doing.
            gone = self._gone(result, since=time.time() - result.duration - 1)
            if gone is not None:
                raise gone
        return result

    def _kill(self, container: str, kind: str, pid: int) -> None:
        """SIGKILL the command's process group (or tree) from a second exec; errors are
        swallowed, as the timeout or interrupt is what the caller must see."""
        if kind not in ("G", "T") or pid <= 1:
            return
        with contextlib.suppress(Exception):
            self.client.api.exec_start(self.client.api.exec_create(
                container, kill_argv(kind, pid))["Id"])

    def _gone(self, result: CommandResult | None = None,
              since: float | None = None) -> SandboxGone | None:
        """Why the container can no longer run commands, or None if it still can: the
        container's state while the daemon still has it, its events once removed.

        ``since`` (a command killed by a signal started then): if the memory cgroup ran out
        meanwhile or the deadline has come, the container itself may be dying, and the
        daemon learns of that a moment after the command's death; it is watched for briefly.
        """
        if self._torn_down:
            return SandboxGone(f"sandbox {self._name} was torn down", reason="TornDown",
                               result=result)
        api = self.client.api
        try:
            attrs: dict[str, Any] | None = api.inspect_container(self._container)
        except docker_errors.NotFound:
            attrs = None
        except docker_errors.DockerException:
            return None  # cannot tell; the original error stands
        state = (attrs or {}).get("State") or {}
        if state.get("Running") and not state.get("Restarting"):
            if since is None or not self._dying(since):
                return None
            with contextlib.suppress(docker_errors.DockerException):
                attrs = api.inspect_container(self._container)
            state = (attrs or {}).get("State") or {}
        try:
            actions = {event["action"]: event for event in
                       self._events(self._container or "", self._started_at)}
        except docker_errors.DockerException:
            actions = {}
        died = actions.get("die", {}).get("unix", 0)
        deadline = self.config.active_deadline_seconds
        if state.get("OOMKilled") or "oom" in actions:
            reason = "OOMKilled"
            detail = (f"the container exceeded its memory limit "
                      f"({self.config.resources.memory_limit}); raise memory_limit")
        elif died and died >= self._started_at + deadline - 1:
            reason = "DeadlineExceeded"
            detail = (f"the container ran for its active_deadline_seconds={deadline}; raise "
                      "it for longer-lived sandboxes")
        elif attrs is None:
            reason, detail = "Deleted", "its container was removed"
        else:
            reason = _terminated_reason(state)
            detail = f"the container exited with code {state.get('ExitCode')}"
        return SandboxGone(f"sandbox {self._name} is gone ({reason}): {detail}", reason=reason,
                           result=result)

    # --- files ----------------------------------------------------------------------------

    def upload(self, local_path: str | os.PathLike[str], remote_path: str) -> None:
        source, parent, name = upload_source(local_path, remote_path)
        container = self._running_container()
        # The files must belong to the container's user, as `tar -x -o` makes them in the
        # Kubernetes backend. Numeric ids go into the archive; a user name needs the daemon
        # to read the image's /etc/passwd (copyUIDGID, which the SDK's put_archive lacks).
        user = self._user.split(":")
        numeric = all(part.isdigit() for part in user) and user != [""]
        owner = (int(user[0]), int(user[-1]) if len(user) > 1 else 0) if numeric else (0, 0)
        by_name = not numeric and user != [""]
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY) as archive:
            pack(source, name, archive, owner)
            archive.seek(0)
            data = archive.read()
        if not self._put_archive(container, parent, data, by_name):
            # The daemon extracts only into an existing directory, as `tar -C` does.
            made = self.exec_argv(["mkdir", "-p", "--", parent], timeout=60,
                                  command_text=f"mkdir -p {parent}")
            if made.exit_code != 0:
                raise CommandFailed(made)
            if not self._put_archive(container, parent, data, by_name):
                raise FileNotFoundError(2, "no such directory in the sandbox", parent)

    def _put_archive(self, container: str, parent: str, data: bytes, by_name: bool) -> bool:
        """Extract ``data`` into ``parent``; False if ``parent`` does not exist."""
        api = self.client.api
        url = f"{api.base_url}/v{api.api_version}/containers/{container}/archive"
        params = {"path": parent, **({"copyUIDGID": "1"} if by_name else {})}
        response = api.put(url, params=params, data=data)
        if response.status_code == 404:
            return False
        try:
            response.raise_for_status()
        except Exception as exc:
            raise docker_errors.APIError(exc, response=response) from exc
        return True

    def download(self, remote_path: str, local_path: str | os.PathLike[str]) -> None:
        container = self._running_container()
        parent, name = remote_split(remote_path.rstrip("/") or "/", "")
        source = f"{parent.rstrip('/')}/{name}" if name != "." else parent
        try:
            chunks, _ = self.client.api.get_archive(container, source)
        except docker_errors.NotFound as exc:
            raise FileNotFoundError(2, "no such file or directory in the sandbox",
                                    remote_path) from exc
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY) as archive:
            for chunk in chunks:
                archive.write(chunk)
            archive.seek(0)
            extract(archive, name, local_path)

    def _running_container(self) -> str:
        if not self._ready or self._container is None:
            gone = self._gone() if self._container else None
            raise gone or SandboxError(f"sandbox {self._name} is not started: call init()")
        return self._container


# --- the container -------------------------------------------------------------------------


def _container_options(config: SandboxConfig, name: str) -> dict[str, Any]:
    """``containers.create`` keyword arguments for the config: the pod spec, in Docker's
    terms. CPU and memory follow the kubelet's mapping (limits to CFS quota and a hard
    memory limit, requests to CPU shares and a soft reservation); swap stays off, as on a
    node."""
    r = config.resources
    memory = int(quantity_value(r.memory_limit))
    key, value = SANDBOX_APP_LABEL
    labels = {**config.labels, key: value, ID_LABEL: name, OWNER_ANNOTATION: owner_description(),
              DEADLINE_LABEL: str(config.active_deadline_seconds)}
    network = config.docker_network or ("bridge" if config.allow_egress else "none")
    options: dict[str, Any] = {
        "command": ["timeout", str(config.active_deadline_seconds), "tail", "-f", "/dev/null"],
        "name": name, "labels": labels, "environment": dict(config.env),
        "working_dir": config.workdir, "init": True, "auto_remove": True,
        "network_mode": network, "detach": True,
        "nano_cpus": int(quantity_value(r.cpu_limit) * 10**9),
        "cpu_shares": max(2, int(quantity_value(r.cpu_request) * 1024)),
        "mem_limit": memory, "memswap_limit": memory,
        "mem_reservation": min(int(quantity_value(r.memory_request)), memory),
    }
    if config.security_profile == "restricted":
        options.update(user=f"{RESTRICTED_UID}:{RESTRICTED_UID}", cap_drop=["ALL"],
                       security_opt=["no-new-privileges"])
    return options


def _terminated_reason(state: Mapping[str, Any]) -> str:
    """The reason Kubernetes would give a container in this Docker state."""
    if state.get("OOMKilled"):
        return "OOMKilled"
    if state.get("Status") in ("exited", "dead"):
        return "Completed" if state.get("ExitCode") == 0 else "Error"
    if state.get("Status") == "removing":
        return "Deleting"
    return str(state.get("Status") or "Unknown")


def _status(attrs: Mapping[str, Any], events: list[dict[str, Any]]) -> SandboxStatus:
    """A SandboxStatus from ``docker inspect`` output, in the Job/pod vocabulary widgets and
    diagnostics read: a running container is an Active job with a Running pod."""
    state = attrs["State"]
    status = state.get("Status", "")
    labels = attrs["Config"].get("Labels") or {}
    host = attrs.get("HostConfig") or {}
    if status == "running":
        job_phase, pod_phase, container_state, reason = "Active", "Running", "running", ""
    elif status == "created":
        job_phase, pod_phase, container_state, reason = "Active", "Pending", "waiting", ""
    else:
        reason = _terminated_reason(state)
        failed = reason != "Completed"
        job_phase = "Deleting" if status == "removing" else "Failed" if failed else "Complete"
        pod_phase = "Failed" if failed else "Succeeded"
        container_state = "terminated"
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    ip = next((n.get("IPAddress") for n in networks.values() if n.get("IPAddress")), "")
    limits = {}
    if host.get("NanoCpus"):
        limits["cpu"] = f"{host['NanoCpus'] // 10**6}m"
    if host.get("Memory"):
        limits["memory"] = str(host["Memory"])
    return SandboxStatus(
        name=labels.get(ID_LABEL) or attrs["Name"].lstrip("/"), namespace="",
        job_phase=job_phase, pod_name=attrs["Name"].lstrip("/"), pod_phase=pod_phase,
        container_state=container_state, reason=reason, message=state.get("Error", ""),
        pod_ip=ip, restarts=attrs.get("RestartCount", 0), image=attrs["Config"]["Image"],
        created=_rfc3339(_unix_time(attrs["Created"])), labels=dict(labels),
        events=tuple({k: v for k, v in e.items() if k not in ("action", "unix")}
                     for e in events[-10:]),
        job_active=1 if status in ("running", "created") else 0,
        exit_code=state.get("ExitCode") if container_state == "terminated" else None,
        limits=limits, deleting=status == "removing",
    )


def _unix_time(timestamp: str) -> float:
    """Docker's RFC 3339 timestamps carry nanoseconds, more than datetime parses."""
    head, _, fraction = timestamp.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp()
    return seconds + float(f"0.{fraction[:6] or 0}")


def _rfc3339(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _exit_code(api: Any, exec_id: str, timed_out: bool) -> int:
    """The exit code the daemon recorded for the exec. The daemon sets it before closing the
    stream, so it is there once the stream ended; after a timeout the stream may have been
    abandoned first, and then it is unknown (-1)."""
    info = api.exec_inspect(exec_id)
    code = info.get("ExitCode")
    if info.get("Running") or code is None:
        if timed_out:
            return -1
        raise ExecProtocolError(f"exec {exec_id[:12]} ended without an exit code: {info}")
    return int(code)


# --- one exec ------------------------------------------------------------------------------


class _ExecSession:
    """Drives one exec: writes stdin, demultiplexes Docker's framed stream, reads the
    wrapper's markers, and kills the command on timeout or interrupt.

    A reader thread does the blocking reads (through the HTTP response's buffer, which may
    already hold the first frames) and a writer thread the stdin; this thread only waits on
    their queue, so a deadline or Ctrl-C is always honoured.
    """

    def __init__(self, stdout: OutputStream, stderr: OutputStream,
                 kill: Callable[[str, int], None]) -> None:
        self._stdout = stdout
        self._stderr = stderr
        self._kill = kill
        self._frames: queue.Queue[tuple[int, bytes] | BaseException | None] = queue.Queue()
        self._eof = False
        self.start: tuple[str, int] | None = None
        self.end: tuple[str, int] | None = None

    @property
    def watchdog_fired(self) -> bool:
        return self.end is not None and self.end[0] == "K"

    @property
    def _output_done(self) -> bool:
        return self._stdout.ended and self._stderr.ended

    def run(self, api: Any, exec_id: str, stdin: bytes | None, deadline: float | None) -> bool:
        """Run to the end of the stream; True if the deadline passed and the command was
        killed."""
        sock = api.exec_start(exec_id, socket=True)
        raw: socket.socket = getattr(sock, "_sock", sock)
        response = getattr(sock, "_response", None)
        reader = getattr(getattr(getattr(response, "raw", None), "_fp", None), "fp", None) or sock
        threading.Thread(target=self._read, args=(reader,), daemon=True).start()
        if stdin is not None:
            threading.Thread(target=_write_stdin, args=(raw, stdin), daemon=True).start()
        try:
            return self._loop(deadline)
        except BaseException:
            self._abort()
            raise
        finally:
            with contextlib.suppress(OSError):
                raw.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(Exception):
                sock.close()
                if response is not None:
                    response.close()
            self._stdout.finish()
            self._stderr.finish()

    def _read(self, reader: Any) -> None:
        try:
            while True:
                header = _read_exactly(reader, 8)
                if header is None:
                    break
                kind, size = struct.unpack(">BxxxL", header)
                payload = _read_exactly(reader, size) if size else b""
                if payload is None:
                    break
                self._frames.put((kind, payload))
        except BaseException as exc:  # the socket shut under us, or the daemon vanished
            self._frames.put(exc)
        self._frames.put(None)

    def _loop(self, deadline: float | None) -> bool:
        ended_at: float | None = None
        while not self._eof:
            now = time.monotonic()
            if self._output_done:
                ended_at = ended_at or now
                if now - ended_at >= END_WAIT:
                    return False  # a background child holds the pipes; the markers say it all
            elif deadline is not None and now >= deadline:
                self._time_out()
                return True
            limits = [t for t in ((ended_at or 0) + END_WAIT if ended_at else None, deadline)
                      if t is not None]
            self._step(max(min(limits) - now, 0.0) if limits else None)
        return False

    def _step(self, timeout: float | None) -> None:
        try:
            item = self._frames.get(timeout=timeout)
        except queue.Empty:
            return
        if item is None:
            self._eof = True
            return
        if isinstance(item, BaseException):
            if not self._output_done:
                raise ExecProtocolError(f"the exec stream broke: {item}") from item
            return
        kind, data = item
        if kind not in (_STDOUT, _STDERR):
            return
        stream = self._stdout if kind == _STDOUT else self._stderr
        pieces, markers = stream.split(data)  # markers first: a callback may raise
        for marker, value in markers:
            if marker in ("G", "T"):
                self.start = (marker, value)
            elif self.end is None:
                self.end = (marker, value)
        stream.emit(pieces)

    def _pump_until(self, done: Callable[[], bool], seconds: float) -> None:
        until = time.monotonic() + seconds
        while not done() and not self._eof:
            left = until - time.monotonic()
            if left <= 0:
                return
            self._step(left)

    def _time_out(self) -> None:
        if self.start is None:
            self._pump_until(lambda: self.start is not None, _START_WAIT)
        if self.start is not None and not self._output_done and not self._eof:
            self._kill(*self.start)
        self._pump_until(lambda: self._eof, KILL_DRAIN)

    def _abort(self) -> None:
        """On an interrupt or a callback error: mute the callbacks, kill the command."""
        self._stdout.muted = self._stderr.muted = True
        with contextlib.suppress(Exception):
            if self._eof or self._output_done:
                return
            if self.start is None:
                self._pump_until(lambda: self.start is not None, _START_WAIT)
            if self.start is not None:
                self._kill(*self.start)

    def result(self, text: str, exit_code: int, started: float) -> CommandResult:
        return CommandResult(
            command=text, exit_code=exit_code, stdout_bytes=self._stdout.value(),
            stderr_bytes=self._stderr.value(), duration=time.monotonic() - started,
            truncated=self._stdout.truncated or self._stderr.truncated)


def _read_exactly(reader: Any, size: int) -> bytes | None:
    """``size`` bytes, or None at the end of the stream (a partial frame included)."""
    data = reader.read(size)
    while data is not None and len(data) < size:
        more = reader.read(size - len(data))
        if not more:
            return None
        data += more
    return data or None


def _write_stdin(raw: socket.socket, data: bytes) -> None:
    """Send stdin, then half-close the connection: the daemon closes the command's stdin."""
    with contextlib.suppress(OSError):
        view = memoryview(data)
        for offset in range(0, len(view), _STDIN_CHUNK):
            raw.sendall(view[offset:offset + _STDIN_CHUNK])
        raw.shutdown(socket.SHUT_WR)
