"""Warm pools: sandboxes started ahead of time, so a client gets one in milliseconds.

A pool is a name and a configuration. :class:`SandboxPool` keeps ``size`` idle sandboxes of
it Running; anyone who asks for a sandbox of the same configuration from that pool
(:meth:`SandboxPool.claim`, ``create_sandbox(pool=NAME)``, ``%sandbox_up --pool NAME``)
takes one of them instead of waiting for a new pod, and the pool starts a replacement in
the background. Without an idle one a claim starts a sandbox cold, and says so.

Why the pool lives in the cluster, not in this object: its sandboxes are ordinary sandbox
Jobs (``app=ci-fixer-sandbox``, so ``ls``, ``diagnose`` and ``gc`` know them) labelled with
the pool's name and state (:data:`~sandboxkit.manifests.POOL_LABEL`,
:data:`~sandboxkit.manifests.POOL_STATE_LABEL`, idle or claimed). Any process on any host
claims by changing that label with a conditional update (see
:mod:`sandboxkit.backends.kubernetes.claim`), so clients need no connection to the process
filling the pool, and idle sandboxes outlive it: stopping a pool leaves them claimable
until their ``activeDeadlineSeconds`` ends them (``sandboxkit gc`` then collects them);
:func:`drain` deletes them.

A claimed sandbox is a :class:`KubernetesSandbox` like any other: it keeps its Job's name
(a Job cannot be renamed), its owner annotation names the claimer, ``teardown()`` deletes
it. Only sandboxes whose manifest is the one the claimer's configuration makes are taken
(:func:`~sandboxkit.manifests.pool_spec`); their deadline counts from when the pool started
them, which is why the newest idle one is claimed first.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from .backends.kubernetes.api import JobRef, WatchStream, request_json, watch
from .backends.kubernetes.claim import idle_members, is_alive, take
from .backends.kubernetes.client import Connection, connect, connected
from .backends.kubernetes.lifecycle import create_job, delete_job, wait_running
from .backends.kubernetes.sandbox import KubernetesSandbox
from .backends.kubernetes.status import list_labelled
from .config import SandboxConfig, validate_dns_label
from .errors import ConfigError, SandboxStartupError
from .manifests import (
    POOL_CLAIMED,
    POOL_DRAINING,
    POOL_IDLE,
    POOL_LABEL,
    POOL_SPEC_LABEL,
    POOL_STATE_LABEL,
    new_sandbox_name,
    owner_description,
    pool_job_manifest,
    pool_selector,
    pool_spec,
)

if TYPE_CHECKING:
    import pandas as pd
    from kubernetes.client import ApiClient

__all__ = ["MAX_POOL_SIZE", "POOL_COLUMNS", "PoolProgress", "SandboxPool", "drain",
           "list_pools"]

MAX_POOL_SIZE = 100
POOL_COLUMNS = ("name", "namespace", "idle", "ready", "claimed")
# One watch of the pool lasts this long before it lists again: a bound on how long a change
# missed by a broken watch could go unnoticed, and cheap (one list call).
RELIST_SECONDS = 600.0
STOP_TIMEOUT = 30.0

PoolProgress = Callable[[str, str], None]
"""``on_progress(stage, detail)`` of a filling pool: "creating" (how many), "ready" (one
idle sandbox Running), "failed" (the filler stopped: detail says why)."""


class SandboxPool:
    """Keeps ``size`` idle sandboxes of one configuration Running under the name ``name``.

    ``config`` and ``overrides`` are what :func:`sandboxkit.create_sandbox` takes. Start
    and stop it explicitly or use it as a context manager::

        with SandboxPool("warm", 2, image="python:3.11") as pool:
            sandbox = pool.claim()          # or create_sandbox(image=..., pool="warm")
            sandbox.run_command("python -V")
            sandbox.teardown()

    :meth:`start` fills the pool and waits until its sandboxes run, raising the startup
    error (ImagePullError...) if one cannot start; then a thread refills it whenever one is
    claimed, watching the pool's Jobs. :meth:`stop` ends the thread and leaves the idle
    sandboxes for others to claim (``stop(drain=True)`` or :func:`drain` deletes them).
    """

    def __init__(
        self, name: str, size: int, config: SandboxConfig | None = None, /, *,
        api_client: ApiClient | None = None, on_progress: PoolProgress | None = None,
        **overrides: Any,
    ) -> None:
        validate_dns_label("pool", name, "warm")
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_POOL_SIZE:
            raise ConfigError("size", size, f"must be a whole number from 1 to {MAX_POOL_SIZE}",
                              "2")
        given = {**(dataclasses.asdict(config) if config is not None else {}), **overrides}
        for field in ("pool", "name"):
            if given.get(field) is not None:
                raise ConfigError(field, given[field], "a pool names its own sandboxes; give "
                                  "the pool's name as NAME", "SandboxPool('warm', 2)")
        # From the environment (SANDBOXKIT_POOL=warm, so that every sandbox claims) they
        # mean what claimers ask for, not what the pool is: dropped.
        resolved = dataclasses.replace(SandboxConfig.resolve(config, **overrides), pool=None,
                                       name=None)
        if resolved.execution_backend != "kubernetes":
            raise ConfigError("execution_backend", resolved.execution_backend,
                              "warm pools hold Kubernetes sandboxes only", "kubernetes")
        self.name, self.size, self.config = name, size, resolved
        self.spec = pool_spec(resolved)
        self.error: BaseException | None = None
        self._api_client = api_client
        self._on_progress = on_progress
        # Resolved now (no API call): fill, the refill thread and drain share it.
        self.connection = connect(resolved.kubeconfig, resolved.context, api_client=api_client)
        self.namespace = resolved.namespace or self.connection.namespace
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stream = WatchStream()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"SandboxPool({self.name!r}, size={self.size}, {state})"

    @property
    def running(self) -> bool:
        """Whether the refill thread runs (it stops on :meth:`stop` or a startup failure)."""
        return self._thread is not None and self._thread.is_alive()

    # --- filling --------------------------------------------------------------------------

    def start(self) -> Self:
        """Fill the pool, wait until its sandboxes run, then refill in the background."""
        if self.running:
            return self
        self.error = None
        self._stopping.clear()
        self._stream = WatchStream()
        self.fill()
        self._thread = threading.Thread(target=self._refill, daemon=True,
                                        name=f"sandboxkit-pool-{self.name}")
        self._thread.start()
        return self

    def stop(self, *, drain: bool = False, timeout: float = STOP_TIMEOUT) -> None:
        """End the refill thread (a sandbox it is starting finishes starting); idle
        sandboxes stay for others to claim unless ``drain``, which deletes them."""
        self._stopping.set()
        self._stream.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if drain:
            self.drain()

    def wait(self) -> None:
        """Block until the refill thread ends; raise what ended it, if anything did.

        What ``sandboxkit pool start`` runs: Ctrl-C interrupts it, then :meth:`stop`.
        """
        thread = self._thread
        if thread is not None:
            while thread.is_alive():
                thread.join(RELIST_SECONDS)  # a timed join stays interruptible everywhere
        if self.error is not None:
            raise self.error

    def fill(self) -> list[str]:
        """Create what the pool lacks and wait until it runs: the names created.

        A sandbox that cannot start is deleted and its typed error raised (the other new
        ones are deleted too: they would fail alike); one claimed while it starts is the
        claimer's to wait for.
        """
        conn = self.connection
        alive = [job for job in idle_members(conn, self.namespace, self.name)
                 if is_alive(job) and job["metadata"]["labels"].get(POOL_SPEC_LABEL) == self.spec]
        missing = self.size - len(alive)
        if missing <= 0:
            return []
        self._report("creating", f"{missing} sandbox(es) for pool {self.name} in namespace "
                                 f"{self.namespace}")
        owner = owner_description()
        created = [JobRef.from_job(create_job(conn, self.namespace, pool_job_manifest(
            dataclasses.replace(self.config, namespace=self.namespace), new_sandbox_name(),
            owner, self.name))) for _ in range(missing)]
        for index, job in enumerate(created):
            try:
                wait_running(conn, job, timeout=self.config.startup_timeout)
            except SandboxStartupError:
                if not _still_idle(conn, job):
                    continue  # claimed (and maybe torn down) while starting: not ours
                for unstarted in created[index:]:
                    if _still_idle(conn, unstarted):
                        delete_job(conn, unstarted)
                raise
            self._report("ready", f"Job {job.namespace}/{job.name} is idle")
        return [job.name for job in created]

    def _refill(self) -> None:
        try:
            while not self._stopping.is_set():
                if self._wait_for_shortage():
                    self.fill()
        except BaseException as exc:
            if not self._stopping.is_set():
                self.error = exc
                self._report("failed", f"pool {self.name} stopped refilling: {exc}")

    def _wait_for_shortage(self) -> bool:
        """Watch the pool's idle sandboxes until fewer than ``size`` are alive (True) or
        the watch ends (False: stopped, or time to list again)."""
        conn = self.connection
        alive: dict[str, bool] = {}
        for kind, obj in watch(conn.batch().list_namespaced_job, self.namespace,
                               resource_version=None, stream=self._stream,
                               deadline=time.monotonic() + RELIST_SECONDS,
                               label_selector=pool_selector(self.name, POOL_IDLE)):
            if kind == "SYNC":
                alive = {}
            for job in obj if kind == "SYNC" else [obj]:
                uid = job["metadata"]["uid"]
                alive[uid] = kind != "DELETED" and is_alive(job) and (
                    job["metadata"].get("labels", {}).get(POOL_SPEC_LABEL) == self.spec)
            if sum(alive.values()) < self.size:
                return True
        return False

    def _report(self, stage: str, detail: str) -> None:
        if self._on_progress is not None:
            self._on_progress(stage, detail)

    # --- using it -------------------------------------------------------------------------

    def claim(self, on_progress: Callable[[str, str], None] | None = None) -> KubernetesSandbox:
        """An idle sandbox of this pool, Running and owned by the caller, or a cold start
        when none is idle (``on_progress`` hears "claimed" or "cold", as in
        :meth:`KubernetesSandbox.init`)."""
        sandbox = KubernetesSandbox(config=dataclasses.replace(self.config, pool=self.name),
                                    api_client=self._api_client)
        return sandbox.init(on_progress=on_progress)

    def drain(self) -> list[str]:
        """Delete this pool's idle sandboxes (see :func:`drain`)."""
        return drain(self.name, self.namespace, connection=self.connection)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __del__(self) -> None:
        # Only the connection pools; getattr: __init__ may have refused the settings.
        conn = getattr(self, "connection", None)
        if conn is not None and self._api_client is None:
            conn.close()


def _still_idle(conn: Connection, job: JobRef) -> bool:
    """Whether pool sandbox ``job`` exists and is unclaimed: the pool's to delete."""
    from kubernetes.client.exceptions import ApiException

    try:
        current = request_json(conn.batch().read_namespaced_job, job.name, job.namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    labels = current["metadata"].get("labels") or {}
    return current["metadata"].get("uid") == job.uid and labels.get(POOL_STATE_LABEL) == POOL_IDLE


def drain(pool: str, namespace: str | None = None, *,
          connection: Connection | None = None) -> list[str]:
    """Delete the idle sandboxes of ``pool`` (in ``namespace``, default: the connection's);
    the names deleted. Claimed ones are their claimers' and stay.

    Each is first moved to state "draining" by the same conditional update a claim makes, so
    a sandbox claimed while the drain runs is never deleted under its new owner.
    """
    validate_dns_label("pool", pool, "warm")
    with connected(connection) as conn:
        deleted = []
        for job in idle_members(conn, namespace or conn.namespace, pool):
            taken = take(conn, job, POOL_DRAINING)
            if taken is not None and delete_job(conn, JobRef.from_job(taken)):
                deleted.append(taken["metadata"]["name"])
        return deleted


def list_pools(namespace: str | None = None, *, all_namespaces: bool = False,
               connection: Connection | None = None) -> pd.DataFrame:
    """One row per pool that has sandboxes, from one list call: ``idle`` counts the alive
    idle ones, ``ready`` those of them whose pod is ready, ``claimed`` the claimed ones
    still there. Columns: :data:`POOL_COLUMNS`, sorted by namespace and name."""
    import pandas as pd

    counts: dict[tuple[str, str], dict[str, int]] = {}
    with connected(connection) as conn:
        jobs = list_labelled(conn, "job", namespace, all_namespaces, pool_selector())
    for job in jobs:
        meta = job["metadata"]
        labels = meta.get("labels") or {}
        row = counts.setdefault((meta.get("namespace", ""), labels.get(POOL_LABEL, "")),
                                {"idle": 0, "ready": 0, "claimed": 0})
        if not is_alive(job):
            continue
        state = labels.get(POOL_STATE_LABEL)
        if state == POOL_IDLE:
            row["idle"] += 1
            row["ready"] += int((job.get("status") or {}).get("ready") or 0) > 0
        elif state == POOL_CLAIMED:
            row["claimed"] += 1
    rows = [{"name": pool, "namespace": ns, **row} for (ns, pool), row in counts.items()]
    frame = pd.DataFrame(rows, columns=list(POOL_COLUMNS))
    return frame.sort_values(["namespace", "name"], ignore_index=True)
