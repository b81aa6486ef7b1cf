"""KubernetesSandbox: the seed design's sandbox, a Job whose pod idles until exec'd into.

Constructing one does no I/O; :meth:`KubernetesSandbox.init` creates the Job and returns
when its pod is Running (see :mod:`.lifecycle` for how it waits and fails); commands go
through the pods/exec subresource (:mod:`.exec`); files through tar over exec
(:mod:`.files`); :meth:`KubernetesSandbox.teardown` deletes the Job in the foreground.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any, Self

from ... import metrics
from ...config import SANDBOX_APP_LABEL, SandboxConfig
from ...errors import (
    ExecError,
    ExecProtocolError,
    PermissionDenied,
    SandboxError,
    SandboxGone,
    SandboxNotFound,
    SandboxStartupError,
    SessionLost,
)
from ...manifests import (
    CONTAINER_NAME,
    job_manifest,
    new_sandbox_name,
    owner_description,
    pool_spec,
)
from ...models import CommandResult, SandboxStatus
from ..base import ArgvSandbox, OutputCallback, ProgressCallback
from ..session_pool import SessionPool
from ..stdin import StdinData
from . import files as _files
from .api import (
    JobRef,
    api_error,
    container_status,
    pod_events,
    request_json,
    send,
    spec_image,
)
from .claim import claim_idle
from .client import Connection, connect
from .exec import run_exec
from .lifecycle import create_job, delete_job, wait_gone, wait_running
from .sessions import session_pool
from .status import list_statuses, newest_pod, sandbox_status
from .terminal import ChannelTerminal, open_terminal

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["KubernetesSandbox"]

TEARDOWN_WAIT_TIMEOUT = 120.0


class KubernetesSandbox(ArgvSandbox):
    """A sandbox on Kubernetes: ``KubernetesSandbox(image, namespace)`` as in the seed.

    ``config`` is a base :class:`SandboxConfig` (default: defaults < ``SANDBOXKIT_*``
    environment); keyword ``overrides`` set any of its fields (``cpu_limit="2"``,
    ``startup_timeout=60``, ``kubeconfig=...``). ``api_client`` reuses an already configured
    client's settings instead of resolving a kubeconfig.

    Thread-safe: commands may run from several threads at once. With ``exec_session`` (the
    default) each command runs on a persistent exec session of its own (:mod:`..pool`:
    a small pool, one per concurrently running command); otherwise, and for calls with
    stdin, each command is one exec that owns its stream.
    """

    def __init__(
        self, image: str | None = None, namespace: str | None = None, *,
        config: SandboxConfig | None = None, api_client: ApiClient | None = None,
        **overrides: Any,
    ) -> None:
        if image is not None:
            overrides["image"] = image
        if namespace is not None:
            overrides["namespace"] = namespace
        self.config = SandboxConfig.resolve(config, **overrides)
        self._name = self.config.name or new_sandbox_name()
        self._api_client = api_client
        self._conn: Connection | None = None
        self._job: JobRef | None = None
        self._pod: str | None = None
        self._sessions: SessionPool | None = None
        self._torn_down = False
        # _init_lock serializes init() (which can take minutes); _lock guards quick state
        # changes only, so status() and teardown() from another thread (a widget, a Ctrl-C
        # handler) never wait for a startup in progress.
        self._init_lock = threading.Lock()
        self._lock = threading.Lock()

    # --- identity -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def connection(self) -> Connection:
        """The cluster connection, resolved (kubeconfig or in-cluster) on first use."""
        with self._lock:
            if self._conn is None:
                self._conn = connect(self.config.kubeconfig, self.config.context,
                                     api_client=self._api_client)
            return self._conn

    @property
    def namespace(self) -> str:
        """The configured namespace, else the kubeconfig context's, else ``default``."""
        return self.config.namespace or self.connection.namespace

    @property
    def pod_name(self) -> str | None:
        """The pod commands run in; None before :meth:`init` and after :meth:`teardown`."""
        return self._pod

    @property
    def job_uid(self) -> str | None:
        return self._job.uid if self._job else None

    def __repr__(self) -> str:
        state = ("torn down" if self._torn_down else f"pod {self._pod}" if self._pod
                 else "not started")
        return f"KubernetesSandbox({self._name!r}, namespace={self.config.namespace!r}, {state})"

    # --- lifecycle ------------------------------------------------------------------------

    def init(self, on_progress: ProgressCallback | None = None) -> Self:
        """Create the Job and wait (by watch) until its pod is Running; idempotent.

        Raises the :class:`SandboxStartupError` subclass that says why not (ImagePullError,
        Unschedulable, QuotaExceeded, ServiceAccountMissing, StartupTimeout) or
        PermissionDenied; whatever was created is deleted first unless ``keep_on_failure``.
        ``on_progress`` hears "created" (the Job), then "scheduled", "pulling" and
        "running" from the pod watch.

        With ``config.pool`` it first claims an idle sandbox of that warm pool (see
        :mod:`sandboxkit.pool`): "claimed", and :attr:`name` becomes the claimed Job's; or
        "cold" when none is idle with this configuration, and a new Job is created as above.
        """
        with self._init_lock:
            if self._pod is not None:
                return self
            if self._torn_down:
                raise SandboxError(f"sandbox {self._name} was torn down; create a new one")
            conn, namespace = self.connection, self.namespace
            if self.config.pool is not None and self._claim(conn, namespace, on_progress):
                return self
            config = dataclasses.replace(self.config, namespace=namespace, name=self._name)
            manifest = job_manifest(config, self._name, owner_description())
            started = time.monotonic()
            try:
                created = create_job(conn, namespace, manifest)
            except Exception as exc:  # refused (RBAC, quota, no namespace): a failed start
                metrics.record_failed(config.execution_backend, exc)
                raise
            metrics.record_created(config.execution_backend)
            job = JobRef.from_job(created)
            with self._lock:
                self._job = job
            try:
                if on_progress is not None:
                    on_progress("created", f"Job {namespace}/{job.name}")
                pod = wait_running(conn, job, timeout=config.startup_timeout,
                                   on_progress=on_progress)
            except BaseException as exc:  # Ctrl-C too: never leave a half-made sandbox
                metrics.record_failed(config.execution_backend, exc)
                self._after_failed_start(exc)
                raise
            self._became_ready(pod, conn, namespace)
            metrics.record_started(config.execution_backend, time.monotonic() - started)
            return self

    def _became_ready(self, pod: dict[str, Any], conn: Connection, namespace: str) -> None:
        """Commands go to ``pod`` from now on, unless teardown() from another thread won
        the race with init(): then SandboxGone."""
        with self._lock:
            if self._torn_down:
                raise SandboxGone(f"sandbox {self._name} was torn down during init()",
                                  reason="TornDown")
            self._set_pod(pod["metadata"]["name"], conn, namespace)

    def _set_pod(self, pod: str, conn: Connection, namespace: str) -> None:
        """Commands run in ``pod`` from now on; with a session pool into it if configured.
        Takes the connection and namespace because it runs under ``_lock``."""
        self._pod = pod
        if self.config.exec_session:
            self._sessions = session_pool(conn.api_client(), namespace, pod, CONTAINER_NAME)

    def _claim(self, conn: Connection, namespace: str,
               on_progress: ProgressCallback | None) -> bool:
        """Become an idle sandbox of ``config.pool`` (see :mod:`.claim`); False when none
        is idle with this configuration, said through ``on_progress`` ("cold") before
        init() starts one as without a pool.

        The claimed sandbox keeps its Job's name (names are immutable), so :attr:`name`
        changes to it. One whose pod stopped while it idled is deleted and the next taken.
        """
        pool = str(self.config.pool)
        spec = pool_spec(self.config)
        requested = (self._name, self.config)  # what a cold start uses, after a discard too
        while True:
            claim = claim_idle(conn, namespace, pool, spec, owner_description())
            if claim.job is None:
                with self._lock:
                    self._job, self._name = None, requested[0]
                self.config = requested[1]
                if on_progress is not None:
                    on_progress("cold", f"{claim.reason}: starting a new sandbox")
                return False
            job = JobRef.from_job(claim.job)
            with self._lock:
                self._job, self._name = job, job.name
            self.config = dataclasses.replace(self.config, name=job.name)
            if on_progress is not None:
                on_progress("claimed", f"Job {namespace}/{job.name} from pool {pool}")
            try:
                pod = wait_running(conn, job, on_progress=on_progress,
                                   timeout=self.config.startup_timeout)
            except SandboxStartupError as exc:  # it broke while idle; it is ours to delete
                delete_job(conn, job)
                if on_progress is not None:
                    on_progress("discarded", f"Job {job.name}: {exc}")
                continue
            except BaseException as exc:  # Ctrl-C: as a cold start's, never left half-taken
                self._after_failed_start(exc)
                raise
            self._became_ready(pod, conn, namespace)
            metrics.record_attached(self.config.execution_backend)
            return True

    def _after_failed_start(self, exc: BaseException) -> None:
        assert self._job is not None
        job = self._job
        if self.config.keep_on_failure:
            exc.add_note(f"kept for debugging (keep_on_failure): kubectl describe job "
                         f"{job.name} -n {job.namespace}; delete it with teardown()")
            return
        with self._lock:
            self._torn_down = True
        try:
            delete_job(self.connection, job)
        except Exception as cleanup:  # the startup failure is the error to report
            exc.add_note(f"deleting Job {job.namespace}/{job.name} also failed: {cleanup}")

    @classmethod
    def attach(
        cls, name: str, namespace: str | None = None, *, config: SandboxConfig | None = None,
        api_client: ApiClient | None = None, **overrides: Any,
    ) -> KubernetesSandbox:
        """Take over an existing sandbox by name (after a kernel restart, from another
        process); waits until its pod is Running, like :meth:`init`.

        Raises :class:`SandboxNotFound` when no Job has that name or the Job is not a
        sandbox (no ``app=ci-fixer-sandbox`` label), SandboxGone when it is being deleted.
        """
        from kubernetes.client.exceptions import ApiException

        sandbox = cls(namespace=namespace, config=config, api_client=api_client, name=name,
                      **overrides)
        conn, ns = sandbox.connection, sandbox.namespace
        try:
            job = request_json(conn.batch().read_namespaced_job, name, ns)
        except ApiException as exc:
            if exc.status == 404:
                raise SandboxNotFound(f"no sandbox named {name} in namespace {ns}",
                                      name=name, namespace=ns) from exc
            raise
        labels = job.get("metadata", {}).get("labels") or {}
        key, value = SANDBOX_APP_LABEL
        if labels.get(key) != value:
            raise SandboxNotFound(
                f"Job {ns}/{name} is not a sandbox (it has no {key}={value} label)",
                name=name, namespace=ns)
        if job.get("metadata", {}).get("deletionTimestamp"):
            raise SandboxGone(f"sandbox {name} is being deleted", reason="Deleting")
        image = spec_image(job["spec"]["template"])
        if image:
            sandbox.config = dataclasses.replace(sandbox.config, image=image, namespace=ns)
        sandbox._job = JobRef.from_job(job)
        pod = wait_running(conn, sandbox._job, timeout=sandbox.config.startup_timeout)
        sandbox._set_pod(pod["metadata"]["name"], conn, ns)
        metrics.record_attached(sandbox.config.execution_backend)
        return sandbox

    def teardown(self, wait: bool = False, timeout: float = TEARDOWN_WAIT_TIMEOUT) -> None:
        """Delete the Job with propagationPolicy Foreground; idempotent.

        Returns at once by default (the pod's grace period runs on in the cluster);
        ``wait=True`` returns once Job and pod are gone, watching rather than polling.
        """
        with self._lock:
            job = self._job
            active = self._pod is not None  # counted once: a second teardown finds None
            self._pod = None
            self._torn_down = True
            sessions, self._sessions = self._sessions, None
        if sessions is not None:
            sessions.close()
        if active:
            metrics.record_stopped(self.config.execution_backend)
        if job is None:
            return  # never created: nothing to delete
        conn = self.connection
        delete_job(conn, job)
        if wait:
            wait_gone(conn, job, timeout)

    def status(self) -> SandboxStatus:
        """The Job, its newest pod and their latest events; ``job_phase`` "Missing" once gone."""
        conn, namespace = self.connection, self.namespace
        job = self._own_job()
        ref = JobRef.from_job(job) if job else self._job
        pods: list[dict[str, Any]] = []
        if ref is not None:
            pods = request_json(conn.core().list_namespaced_pod, namespace,
                                label_selector=ref.selector).get("items") or []
        pod = newest_pod(pods)
        uids = [ref.uid if ref else "", (pod or {}).get("metadata", {}).get("uid", "")]
        events: list[dict[str, Any]] = []
        # Events are extra evidence, and the seed Role grants none: an identity holding only
        # that Role (ci-fixer-app) still gets the Job's and pod's status.
        with contextlib.suppress(PermissionDenied):
            events = pod_events(conn, namespace, uids) if ref else []
        return sandbox_status(self._name, namespace, job, pod, events)

    def _own_job(self) -> dict[str, Any] | None:
        """This sandbox's Job as the API has it now; None once deleted (404) or replaced:
        a newer Job reusing the name is not this sandbox."""
        from kubernetes.client.exceptions import ApiException

        try:
            job = request_json(self.connection.batch().read_namespaced_job, self._name,
                               self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return None
        if self._job is not None and job["metadata"]["uid"] != self._job.uid:
            return None
        return job

    @classmethod
    def list_sandboxes(cls, config: SandboxConfig | None = None, *,
                       api_client: ApiClient | None = None) -> list[SandboxStatus]:
        """Every sandbox Job in ``config``'s namespace (default: the kubeconfig context's),
        oldest first, from two list calls. :func:`sandboxkit.inventory.list_sandboxes` gives
        the same as a DataFrame, across namespaces too."""
        config = SandboxConfig.resolve(config)
        conn = connect(config.kubeconfig, config.context, api_client=api_client)
        try:
            listed = list_statuses(conn, config.namespace)
        finally:
            conn.close()
        return sorted((status for _, status in listed), key=lambda s: (s.created, s.name))

    def _logs(self, tail: int | None) -> str:
        """The sandbox container's log, through the API (``kubectl logs``)."""
        pod = self._require_ready(self._pod)
        from kubernetes.client.exceptions import ApiException

        try:
            response = send(self.connection.core().read_namespaced_pod_log, pod,
                            self.namespace, container=CONTAINER_NAME, tail_lines=tail)
        except ApiException as exc:
            raise api_error(exc, sandbox=self._name) from None
        try:
            return bytes(response.data).decode("utf-8", "replace")
        finally:
            response.release_conn()

    # --- commands -------------------------------------------------------------------------

    def open_terminal(self, argv: Sequence[str]) -> ChannelTerminal:
        """``kubectl exec -it POD -c sandbox -- ARGV``: a terminal over pods/exec."""
        pod = self._require_ready(self._pod)
        return open_terminal(self.connection.api_client(), self.namespace, pod,
                             CONTAINER_NAME, argv)

    def exec_argv(
        self, argv: Sequence[str], *, stdin: StdinData | None = None,
        timeout: float | None = None, on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None, stdout_sink: IO[bytes] | None = None,
        output_limit: int | None = None, command_text: str | None = None,
    ) -> CommandResult:
        """Run ``argv`` as is (no shell) in the sandbox container.

        ``timeout`` None means the config's ``command_timeout``. When the exec fails
        because the pod went away, the error is :class:`SandboxGone` with the reason.
        """
        pod = self._require_ready(self._pod)
        options: dict[str, Any] = {
            "timeout": self._timeout_or_default(timeout), "on_stdout": on_stdout,
            "on_stderr": on_stderr, "stdout_sink": stdout_sink, "command_text": command_text,
            "output_limit": self.config.output_limit if output_limit is None else output_limit}
        sessions = self._sessions
        try:
            if sessions is not None and stdin is None:
                result = sessions.run(argv, **options)
            else:
                result = run_exec(self.connection.api_client(), self.namespace, pod,
                                  CONTAINER_NAME, argv, stdin=stdin, **options)
        except (ExecError, ExecProtocolError, SandboxGone, OSError) as exc:
            gone = self._gone(pod, exc.result if isinstance(exc, SessionLost) else None)
            if gone is None:
                raise
            raise gone from exc
        if result.exit_code >= 128:
            # Killed by a signal: by the command itself (`kill -9 $$`), or because the pod is
            # going away under it -- then the result is not the command's doing.
            gone = self._gone(pod, result)
            if gone is not None:
                raise gone
        return result

    def _gone(self, pod_name: str, result: CommandResult | None = None) -> SandboxGone | None:
        """Why the sandbox can no longer run commands, or None if it still can.

        Reads the Job and the pod: the Job's failure condition names a deadline, the pod's
        status an eviction, the container's termination an OOM kill.
        """
        from kubernetes.client.exceptions import ApiException

        conn, namespace = self.connection, self.namespace
        try:
            pod: dict[str, Any] | None = request_json(conn.core().read_namespaced_pod,
                                                      pod_name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                return None
            pod = None
        except Exception:  # cannot tell; the original error stands
            return None
        status = (pod or {}).get("status", {})
        state = container_status(pod or {}).get("state") or {}
        deleting = bool((pod or {}).get("metadata", {}).get("deletionTimestamp"))
        if pod is not None and not deleting and "running" in state:
            return None
        try:
            job = self._own_job()
        except Exception:
            job = None
        failed = next((c for c in (job or {}).get("status", {}).get("conditions") or []
                       if c.get("type") in ("Failed", "FailureTarget")
                       and c.get("status") == "True"), None)
        terminated = state.get("terminated") or {}
        # Root cause first: the Job controller's deadline ends the pod, and a deleted pod in
        # turn fails the Job (BackoffLimitExceeded), which says less than the deletion.
        if failed is not None and failed.get("reason") == "DeadlineExceeded":
            reason = "DeadlineExceeded"
            detail = (f"{failed.get('message', '')} (active_deadline_seconds="
                      f"{self.config.active_deadline_seconds}; raise it for longer-lived "
                      "sandboxes)")
        elif job is None:
            reason, detail = "Deleted", "its Job was deleted"
        elif pod is None:
            reason, detail = "Deleted", f"pod {pod_name} was deleted"
        elif deleting:
            reason, detail = "Deleting", f"pod {pod_name} is being deleted"
        elif status.get("reason"):
            reason, detail = status["reason"], status.get("message", "")
        elif terminated.get("reason"):
            reason, detail = terminated["reason"], terminated.get("message", "")
        elif failed is not None:
            reason, detail = failed.get("reason", "Failed"), failed.get("message", "")
        else:
            reason, detail = status.get("phase") or "Unknown", "the container is not running"
        return SandboxGone(f"sandbox {self._name} is gone ({reason})"
                           + (f": {detail}" if detail else ""), reason=str(reason), result=result)

    # --- files ----------------------------------------------------------------------------

    def upload(self, local_path: str | os.PathLike[str], remote_path: str) -> None:
        _files.upload(self.exec_argv, local_path, remote_path)

    def download(self, remote_path: str, local_path: str | os.PathLike[str]) -> None:
        _files.download(self.exec_argv, remote_path, local_path)

    def __del__(self) -> None:
        # Only the connection pools: deleting the Job is teardown()'s job, never a GC's.
        with contextlib.suppress(Exception):
            if self._sessions is not None:
                self._sessions.close()
            if self._conn is not None and self._api_client is None:
                self._conn.close()

