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

Commands run through the exec API under the shared wrapper and session engine
(:mod:`.exec`); files travel as tar archives (:mod:`.files`); ``docker inspect`` and the
event stream become SandboxStatus (:mod:`.status`). Everything goes through the Docker SDK for
Python (:mod:`.client`, the ``docker`` extra); ``DOCKER_HOST`` (and ``DOCKER_TLS_VERIFY`` /
``DOCKER_CERT_PATH``) choose the daemon, as for the ``docker`` CLI.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Sequence
from typing import IO, Any, Self

from ... import metrics
from ...config import SANDBOX_APP_LABEL, SandboxConfig, quantity_value
from ...errors import (
    ConfigError,
    ImagePullError,
    SandboxError,
    SandboxGone,
    SandboxNotFound,
    SandboxStartupError,
    SessionLost,
)
from ...manifests import (
    ID_LABEL,
    OWNER_ANNOTATION,
    RESTRICTED_UID,
    new_sandbox_name,
    owner_description,
)
from ...models import CommandResult, SandboxStatus
from ..base import ArgvSandbox, OutputCallback, ProgressCallback
from ..session_pool import SessionPool
from ..stdin import StdinData
from . import files as _files
from .client import docker, docker_client, docker_errors
from .exec import run_exec
from .sessions import session_pool
from .startup import StartWatch, missing_program, start_failure
from .status import (
    container_events,
    container_status,
    first_event,
    terminated_reason,
    unix_time,
)
from .terminal import DockerTerminal

__all__ = ["DEADLINE_LABEL", "DockerSandbox"]

DEADLINE_LABEL = "sandboxkit.io/active-deadline-seconds"
"""Container label recording the deadline, so an attached sandbox can tell a deadline from
another death."""

DIE_WAIT = 5.0  # after an OOM kill, seconds to watch for the container's death
OOM_WAIT = 0.5  # after a command died of a signal, seconds to watch for an OOM kill


class DockerSandbox(ArgvSandbox):
    """A sandbox in a Docker container; the same contract as :class:`KubernetesSandbox`.

    ``config`` is a base :class:`SandboxConfig`; keyword ``overrides`` set any of its fields.
    ``client`` reuses a configured ``docker.DockerClient``. Thread-safe: commands may run
    from several threads at once, each on an exec session of its own (:mod:`..pool`: one
    per concurrently running command) or, with ``exec_session`` off and for calls with
    stdin, on an exec of its own.
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
        self._sessions: SessionPool | None = None
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
        """Start the container and see it live, or raise SandboxStartupError saying why.

        A container that dies at once is removed by the daemon (``auto_remove``), so its
        exit code and output are captured by a :class:`StartWatch` registered before the
        start (see :mod:`.startup` for why that is race-free). A probe command (``/bin/sh
        -c :``, which every command needs) then shows it alive; it takes the round trips a
        failing ``timeout`` or ``tail`` needs to have died, so a refused probe, a stopped
        state or a removed container all mean it did.
        """
        api = self.client.api
        watch = StartWatch(api, container.id)
        try:
            try:
                container.start()
            except docker_errors.APIError as exc:
                raise self._startup_error(str(exc.explanation or exc)) from exc
            probe = self._probe(container.id)
            try:
                container.reload()
                running = container.status == "running"
            except docker_errors.NotFound:
                running = False
            if not running:
                code, output = watch.outcome()
                raise self._startup_error(output, code)
            if probe is not None:
                raise SandboxStartupError(
                    f"container {self._name} runs but cannot run commands: {probe}",
                    sandbox=self._name, reason="StartError")
            self._user = container.attrs["Config"].get("User") or ""
        finally:
            watch.close()

    def _startup_error(self, text: str, exit_code: int | None = None) -> SandboxStartupError:
        return SandboxStartupError(start_failure(self._name, self.config.image, text, exit_code),
                                   sandbox=self._name, reason="StartError")

    def _probe(self, container: str) -> str | None:
        """Run ``/bin/sh -c :`` in the new container: None when it worked, else what the
        image lacks as an error text. A container that is not running (it died) also gives
        None: the caller tells that from its state."""
        api = self.client.api
        try:
            exec_id = api.exec_create(container, ["/bin/sh", "-c", ":"])["Id"]
            output = api.exec_start(exec_id).decode("utf-8", "replace")
            code = api.exec_inspect(exec_id).get("ExitCode")
        except docker_errors.APIError as exc:
            output, code = str(exc.explanation or exc), None
            if exc.status_code in (404, 409):  # gone or not running: it died
                return None
        if code == 0:
            return None
        if missing_program(output, code) == "/bin/sh":
            return (f"image {self.config.image} has no `/bin/sh` ({output.strip()}); every "
                    "command runs through it: use an image with a shell (busybox has one)")
        return f"`/bin/sh -c :` failed (exit code {code}): {output.strip()}"

    def _after_failed_start(self, exc: BaseException) -> None:
        """Remove the container, or with ``keep_on_failure`` say where it is -- unless it
        exited, when the daemon has removed it (``auto_remove``) and there is nothing left
        to keep: the error already quotes its exit code and output."""
        if self.config.keep_on_failure:
            try:
                self.client.api.inspect_container(self._container)
            except docker_errors.NotFound:
                exc.add_note(f"container {self._name} exited and the daemon removed it "
                             "(auto_remove): keep_on_failure cannot keep it")
                return
            except Exception:  # the startup failure is the error to report
                pass
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
                              reason=terminated_reason(attrs["State"]))
        deadline = labels.get(DEADLINE_LABEL, "")
        sandbox.config = dataclasses.replace(
            sandbox.config, image=attrs["Config"]["Image"],
            active_deadline_seconds=(int(deadline) if deadline.isdigit()
                                     else sandbox.config.active_deadline_seconds))
        sandbox._container = attrs["Id"]
        sandbox._user = attrs["Config"].get("User") or ""
        sandbox._started_at = unix_time(attrs["Created"])
        sandbox._ready = True
        metrics.record_attached(sandbox.config.execution_backend)
        return sandbox

    @classmethod
    def list_sandboxes(cls, config: SandboxConfig | None = None, *,
                       client: docker.DockerClient | None = None) -> list[SandboxStatus]:
        """Every sandbox container on the daemon (``app=ci-fixer-sandbox``), oldest first.

        ``config`` is accepted as by every backend's ``list_sandboxes``; a daemon has no
        namespaces, so nothing in it narrows the list (``DOCKER_HOST`` chooses the daemon).
        """
        del config
        client = client or docker_client()
        key, value = SANDBOX_APP_LABEL
        found = client.api.containers(all=True, filters={"label": f"{key}={value}"})
        statuses = [container_status(client.api.inspect_container(c["Id"]), [])
                    for c in found]
        return sorted(statuses, key=lambda status: status.created)

    def teardown(self, wait: bool = False) -> None:
        """Kill and remove the container; idempotent. Removal is synchronous, so ``wait``
        only matters while the daemon's own auto-removal is in progress."""
        with self._lock:
            container, active = self._container, self._ready
            self._ready = False
            self._torn_down = True
            sessions, self._sessions = self._sessions, None
        if sessions is not None:
            sessions.close()
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
        return container_status(attrs, self._events(attrs["Id"], unix_time(attrs["Created"])))

    def _events(self, container: str, since: float) -> list[dict[str, Any]]:
        """The container's lifecycle events so far, as Kubernetes event dicts."""
        return container_events(self.client.api, container, self._name, since)

    def _dying(self, since: float) -> bool:
        """Whether the container dies right after a command was killed by a signal: watched
        through the event stream for OOM_WAIT seconds (DIE_WAIT at the deadline), and for
        DIE_WAIT once the memory cgroup reported an OOM kill since ``since``."""
        at_deadline = time.time() >= self._started_at + self.config.active_deadline_seconds - 1
        api, container = self.client.api, self._container or ""
        seen = first_event(api, container, since, ["oom", "die"],
                           DIE_WAIT if at_deadline else OOM_WAIT)
        if seen == "oom":
            seen = first_event(api, container, since, ["die"], DIE_WAIT)
        return seen == "die"

    # --- commands -------------------------------------------------------------------------

    def open_terminal(self, argv: Sequence[str]) -> DockerTerminal:
        """``docker exec -it CONTAINER ARGV``."""
        return DockerTerminal(self.client.api, self._running_container(), argv)

    def exec_argv(
        self, argv: Sequence[str], *, stdin: StdinData | None = None,
        timeout: float | None = None, on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None, stdout_sink: IO[bytes] | None = None,
        output_limit: int | None = None, command_text: str | None = None,
    ) -> CommandResult:
        """Run ``argv`` as is (no shell) in the container, under the kill wrapper.

        ``timeout`` None means the config's ``command_timeout``. Raises CommandTimeout once
        the command is killed, SandboxGone (with the reason, OOMKilled included) when the
        container went away."""
        container = self._running_container()
        options: dict[str, Any] = {
            "timeout": self._timeout_or_default(timeout), "on_stdout": on_stdout,
            "on_stderr": on_stderr, "stdout_sink": stdout_sink, "command_text": command_text,
            "output_limit": self.config.output_limit if output_limit is None else output_limit}
        sessions = self._session_pool(container) if stdin is None else None
        if sessions is None:
            result = run_exec(self.client.api, container, argv, stdin=stdin,
                              explain=self._gone, **options)
        else:
            try:
                result = sessions.run(argv, **options)
            except SessionLost as exc:  # the daemon may learn of a dying container later
                gone = self._gone(exc.result, since=time.time() - exc.result.duration - 1)
                if gone is None:
                    raise
                raise gone from exc
        if result.exit_code >= 128:
            # Killed by a signal: by the command itself, or because the container is going
            # away under it -- then the result is not the command's doing.
            gone = self._gone(result, since=time.time() - result.duration - 1)
            if gone is not None:
                raise gone
        return result

    def _session_pool(self, container: str) -> SessionPool | None:
        """The pool of exec sessions into ``container`` (made on first use), or None when
        ``exec_session`` is off."""
        if not self.config.exec_session:
            return None
        api = self.client.api  # before _lock, which the client property takes
        with self._lock:
            if self._sessions is None and not self._torn_down:
                self._sessions = session_pool(api, container, self._gone)
            return self._sessions

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
            reason = terminated_reason(state)
            detail = f"the container exited with code {state.get('ExitCode')}"
        return SandboxGone(f"sandbox {self._name} is gone ({reason}): {detail}", reason=reason,
                           result=result)

    # --- files ----------------------------------------------------------------------------

    def upload(self, local_path: str | os.PathLike[str], remote_path: str) -> None:
        _files.upload(self.client.api, self._running_container(), self._user, self.exec_argv,
                      local_path, remote_path)

    def download(self, remote_path: str, local_path: str | os.PathLike[str]) -> None:
        _files.download(self.client.api, self._running_container(), remote_path, local_path)

    def _logs(self, tail: int | None) -> str:
        """The container's own output (its init and ``tail``, not the commands'), as
        ``docker logs`` prints it: stdout and stderr interleaved."""
        container = self._running_container()
        data = self.client.api.logs(container, stdout=True, stderr=True,
                                    tail="all" if tail is None else tail)
        return data.decode("utf-8", "replace")

    def _running_container(self) -> str:
        """The container id, or the not-started / torn-down error commands raise."""
        return self._require_ready(self._container if self._ready else None)


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
