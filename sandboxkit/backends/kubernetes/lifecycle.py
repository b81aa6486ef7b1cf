"""A sandbox Job's life: create it, wait (by watch) until its pod runs, delete it.

Why watches and not polling: a watch started from the create's resourceVersion sees every
change of the Job's pod and every event about the Job in order and without a gap, so
``init()`` returns the moment the pod is Running and fails the moment Kubernetes says why it
never will be -- an image that cannot be pulled, no node that fits, a quota or a missing
ServiceAccount that stops the Job controller creating the pod at all. Those failures surface
in different places, so two watches are involved:

- pods with the Job's label selector, on the calling thread: container waiting reasons
  (ErrImagePull, ImagePullBackOff, InvalidImageName) and the PodScheduled condition
  (Unschedulable);
- events with ``involvedObject.uid`` = the Job, in a thread with its own ApiClient, started
  only while no pod exists: FailedCreate from the Job controller (``exceeded quota``,
  ``serviceaccount "x" not found``). It cuts the pod watch short when it finds one.

The requests, their typed errors, the watch (resumed across server timeouts and 410 Gone)
and the pod and event fields read here are :mod:`.api`'s, shared with the feed and
diagnostics; this module holds only what a sandbox's startup and teardown decide.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...errors import (
    ImagePullError,
    PodSecurityViolation,
    QuotaExceeded,
    SandboxError,
    SandboxStartupError,
    ServiceAccountMissing,
    StartupTimeout,
    Unschedulable,
)
from ..base import ProgressCallback
from .api import (
    RBAC_MANIFEST,
    JobRef,
    WatchStream,
    container_status,
    is_running,
    pod_events,
    request_json,
    spec_image,
    watch,
)
from .client import Connection

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = [
    "IMAGE_PULL_REASONS",
    "create_job",
    "delete_job",
    "describe_pod_problem",
    "job_event_problem",
    "wait_gone",
    "wait_running",
]

IMAGE_PULL_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
     "RegistryUnavailable"}
)
# Waiting reasons after which the container will never start without a change to the spec.
FATAL_WAITING_REASONS = frozenset(
    {"CreateContainerConfigError", "CreateContainerError", "RunContainerError",
     "CrashLoopBackOff"}
)
# Without a pod after this long, the Job's events are watched too (see _JobEventWatcher).
EVENT_WATCH_DELAY = 0.3
# How long wait_running waits for its helper threads to end once it has its answer.
JOIN_TIMEOUT = 2.0

_MISSING_SA = re.compile(r'serviceaccount "(?P<name>[^"]+)" not found')
_POD_SECURITY = re.compile(r'violates PodSecurity "(?P<level>[^"]+)": (?P<detail>.*)', re.S)


# --- creating and deleting the Job --------------------------------------------------------


def create_job(conn: Connection, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """Create the Job; a name already taken says how to take the sandbox over instead."""
    from kubernetes.client.exceptions import ApiException

    name = manifest["metadata"]["name"]
    try:
        return request_json(conn.batch().create_namespaced_job, namespace, manifest)
    except ApiException as exc:
        if exc.status == 409:
            raise SandboxError(
                f"a Job named {name} already exists in namespace {namespace}: take it over "
                f"with KubernetesSandbox.attach({name!r}, namespace={namespace!r}) or choose "
                "another name"
            ) from exc
        if exc.status == 404:
            raise SandboxError(f"namespace {namespace} does not exist") from exc
        raise


def delete_job(conn: Connection, job: JobRef) -> bool:
    """Delete the Job and (Foreground) its pod; False when it was already gone.

    The uid precondition makes a late teardown harmless: it never deletes a newer Job that
    reuses the name (the API answers 409, read here as "ours is gone").
    """
    from kubernetes.client import V1DeleteOptions, V1Preconditions
    from kubernetes.client.exceptions import ApiException

    options = V1DeleteOptions(propagation_policy="Foreground",
                              preconditions=V1Preconditions(uid=job.uid) if job.uid else None)
    try:
        request_json(conn.batch().delete_namespaced_job, job.name, job.namespace, body=options)
    except ApiException as exc:
        if exc.status in (404, 409):
            return False
        raise
    return True


# --- the Job's events ---------------------------------------------------------------------

class _JobEventWatcher(threading.Thread):
    """Watches the Job's events in a thread (with its own ApiClient) and reports the first
    one that means the pod will never be created (FailedCreate) through ``on_problem``.

    It starts watching only if no pod has shown up after :data:`EVENT_WATCH_DELAY`: a Job
    whose pod exists can no longer fail to create it, and in the common case this saves a
    second watch connection. Starting late loses nothing, since the watch begins at the
    create's resourceVersion. Errors (say, RBAC without ``watch events``) are swallowed: the
    events only sharpen the diagnosis, the pod watch decides.
    """

    def __init__(self, conn: Connection, job: JobRef, resource_version: str | None,
                 deadline: float, pod_seen: threading.Event,
                 on_problem: Callable[[SandboxStartupError], None]) -> None:
        super().__init__(name=f"sandboxkit-events-{job.name}", daemon=True)
        self.conn, self.job, self.resource_version = conn, job, resource_version
        self.deadline, self.pod_seen, self.on_problem = deadline, pod_seen, on_problem
        self.stream = WatchStream()

    def run(self) -> None:
        if self.pod_seen.wait(EVENT_WATCH_DELAY) or self.stream.stopped:
            return
        api = self.conn.new_api_client()
        try:
            events = watch(_core(api).list_namespaced_event, self.job.namespace,
                           resource_version=self.resource_version, deadline=self.deadline,
                           stream=self.stream,
                           field_selector=f"involvedObject.uid={self.job.uid}")
            for kind, obj in events:
                for item in obj if kind == "SYNC" else [obj]:
                    problem = job_event_problem(item, self.job)
                    if problem is not None:
                        self.on_problem(problem)
                        return
        except Exception:  # see the class docstring
            return
        finally:
            with contextlib.suppress(Exception):
                api.close()

    def stop(self) -> None:
        self.stream.stop()


# --- waiting for Running ------------------------------------------------------------------


def _owned_by(pod: dict[str, Any], uid: str) -> bool:
    refs = pod.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid for ref in refs)


def describe_pod_problem(pod: dict[str, Any], sandbox: str) -> SandboxStartupError | None:
    """The typed error for a pod that will not become Running by itself, else None."""
    status = pod.get("status", {})
    pod_name = pod.get("metadata", {}).get("name", "")
    phase = status.get("phase", "")
    container = container_status(pod)
    state = container.get("state") or {}
    waiting = state.get("waiting") or {}
    reason = waiting.get("reason", "")
    if reason in IMAGE_PULL_REASONS:
        image = spec_image(pod) or container.get("image", "")
        detail = _clause(waiting.get("message") or reason)
        return ImagePullError(
            f"sandbox {sandbox}: image {image!r} cannot be pulled ({reason}): {detail}. "
            "Check the image name and tag, and the registry's credentials "
            "(imagePullSecrets) if it is private.",
            image=image, sandbox=sandbox, reason=reason,
        )
    if reason in FATAL_WAITING_REASONS:
        return SandboxStartupError(
            f"sandbox {sandbox}: container cannot start ({reason}): "
            f"{waiting.get('message', '')}", sandbox=sandbox, reason=reason)
    for condition in status.get("conditions") or []:
        if (condition.get("type") == "PodScheduled" and condition.get("status") == "False"
                and condition.get("reason") == "Unschedulable"):
            return Unschedulable(
                f"sandbox {sandbox}: no node can run pod {pod_name}: "
                f"{_clause(condition.get('message', ''))}. Lower the resource requests "
                "(cpu_request, memory_request) or add capacity.",
                sandbox=sandbox, reason="Unschedulable")
    if phase in ("Failed", "Succeeded"):
        terminated = state.get("terminated") or {}
        why = status.get("reason") or terminated.get("reason") or phase
        message = status.get("message") or terminated.get("message") or ""
        return SandboxStartupError(
            f"sandbox {sandbox}: pod {pod_name} ended ({phase}, {why}) before it was ready"
            + (f": {message}" if message else ""), sandbox=sandbox, reason=str(why))
    return None


def _clause(message: str) -> str:
    """A Kubernetes message without its final period, to be followed by our advice."""
    return message.strip().rstrip(".")


def job_event_problem(event: dict[str, Any], job: JobRef) -> SandboxStartupError | None:
    """The typed error a Job event means (FailedCreate: quota, Pod Security, missing
    ServiceAccount; DeadlineExceeded...), else None: shared by init() and diagnostics."""
    reason = event.get("reason", "")
    message = event.get("message", "")
    if reason == "FailedCreate":
        if "exceeded quota" in message:
            return QuotaExceeded(
                f"sandbox {job.name}: a ResourceQuota in namespace {job.namespace} refused its "
                f"pod: {_clause(message)}. Free quota or lower the sandbox's resources.",
                sandbox=job.name, reason=reason)
        violation = _POD_SECURITY.search(message)
        if violation:
            level = violation.group("level")
            return PodSecurityViolation(
                f"sandbox {job.name}: namespace {job.namespace} enforces Pod Security "
                f"{level!r} and refused its pod: {violation.group('detail')}. Create the "
                "sandbox with security_profile='restricted' (or use a namespace whose "
                "pod-security.kubernetes.io/enforce label allows the pod).",
                level=level, sandbox=job.name, reason=reason)
        missing = _MISSING_SA.search(message)
        if missing:
            account = missing.group("name")
            return ServiceAccountMissing(
                f"sandbox {job.name}: ServiceAccount {account!r} does not exist in namespace "
                f"{job.namespace}. Create it with `kubectl apply -n {job.namespace} -f "
                f"{RBAC_MANIFEST}` (or set service_account). The Job controller said: "
                f"{message}", sandbox=job.name, reason=reason)
        return SandboxStartupError(
            f"sandbox {job.name}: the Job controller cannot create its pod: {message}",
            sandbox=job.name, reason=reason)
    if reason in ("DeadlineExceeded", "BackoffLimitExceeded"):
        return SandboxStartupError(f"sandbox {job.name}: Job failed ({reason}): {message}",
                                   sandbox=job.name, reason=reason)
    return None


def _pod_progress(pod: dict[str, Any]) -> list[tuple[str, str]]:
    """The startup stages (after "created") a pod has reached, with a detail line each.

    A later stage implies the earlier ones (a Running pod was scheduled and has its image),
    so a pod seen only once, already Running, still reports every stage.
    """
    name = pod.get("metadata", {}).get("name", "")
    node = pod.get("spec", {}).get("nodeName")
    if not node:
        return []
    stages = [("scheduled", f"pod {name} on node {node}")]
    waiting = (container_status(pod).get("state") or {}).get("waiting")
    running = is_running(pod)
    if waiting is not None or running:
        reason = (waiting or {}).get("reason")
        stages.append(("pulling", f"image {spec_image(pod)}" + (f" ({reason})" if reason
                                                                 else "")))
    if running:
        stages.append(("running", f"pod {name} is Running"))
    return stages


def wait_running(
    conn: Connection, job: JobRef, *, resource_version: str | None, timeout: float,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Block until the Job's pod is Running and return it; raise the typed error otherwise.

    ``resource_version`` is the Job create's: both watches start there, so nothing that
    happens after the create is missed. ``None`` lists first (taking over an existing Job).
    ``on_progress`` hears "scheduled", "pulling" and "running" from the same pod watch,
    each once, in that order.
    """
    reported: set[str] = set()

    def progress(pod: dict[str, Any]) -> None:
        for stage, detail in _pod_progress(pod):
            if on_progress is not None and stage not in reported:
                reported.add(stage)
                on_progress(stage, detail)

    deadline = time.monotonic() + timeout
    pods = WatchStream()
    failures: list[SandboxStartupError] = []
    pod_seen = threading.Event()

    def job_failed(problem: SandboxStartupError) -> None:
        failures.append(problem)
        pods.stop()  # wakes the pod watch below

    # The pod watch runs here, on this thread's client, so it reuses the create's
    # connection; the event watcher and a deadline timer can cut it short.
    events = _JobEventWatcher(conn, job, resource_version, deadline, pod_seen, job_failed)
    events.start()
    # The server ends a watch only on whole seconds; the timer ends it at the deadline.
    timer = threading.Timer(timeout, pods.stop)
    timer.daemon = True
    timer.start()
    last_pod: dict[str, Any] | None = None
    try:
        for kind, obj in watch(conn.core().list_namespaced_pod, job.namespace,
                               resource_version=resource_version, deadline=deadline,
                               stream=pods, label_selector=job.selector):
            for item in obj if kind == "SYNC" else [obj]:
                if not _owned_by(item, job.uid):
                    continue
                pod_seen.set()
                if kind == "DELETED":
                    raise SandboxStartupError(
                        f"sandbox {job.name}: pod {item['metadata']['name']} was deleted "
                        "before it was ready", sandbox=job.name, reason="Deleted")
                last_pod = item
                progress(item)
                if is_running(item):
                    return item
                problem = describe_pod_problem(item, job.name)
                if problem:
                    raise problem
        if failures:
            raise failures[0]
        raise _startup_timeout(conn, job, last_pod, timeout)
    finally:
        # Joined, not left to finish: a daemon thread still alive when a short script
        # exits right after init() can abort the interpreter's shutdown (SIGABRT). Bounded:
        # a watch request the server has not answered yet ends only when it answers.
        events.stop()
        timer.cancel()
        pod_seen.set()  # wakes an event watcher still deciding whether to start
        events.join(JOIN_TIMEOUT)
        timer.join(JOIN_TIMEOUT)


def _core(api: ApiClient) -> Any:
    from kubernetes.client import CoreV1Api

    return CoreV1Api(api)


def _batch(api: ApiClient) -> Any:
    from kubernetes.client import BatchV1Api

    return BatchV1Api(api)


def _startup_timeout(
    conn: Connection, job: JobRef, pod: dict[str, Any] | None, timeout: float
) -> StartupTimeout:
    """Say where startup stood when time ran out: pod phase, reason, the latest events."""
    if pod is None:
        where = "the Job controller has not created its pod yet"
    else:
        container = container_status(pod)
        waiting = (container.get("state") or {}).get("waiting") or {}
        where = (f"pod {pod['metadata']['name']} is {pod.get('status', {}).get('phase', '?')}"
                 + (f" ({waiting.get('reason')}: {waiting.get('message', '')})"
                    if waiting.get("reason") else ""))
    try:
        uids = [job.uid, (pod or {}).get("metadata", {}).get("uid", "")]
        events = pod_events(conn, job.namespace, uids)[-3:]
    except Exception:  # the timeout is the error to report
        events = []
    latest = "; ".join(f"{e.get('reason')}: {e.get('message')}" for e in events)
    return StartupTimeout(
        f"sandbox {job.name} was not Running after {timeout:g}s: {where}"
        + (f". Latest events: {latest}" if latest else ""),
        sandbox=job.name, reason="Timeout")


# --- waiting for deletion -----------------------------------------------------------------


def wait_gone(conn: Connection, job: JobRef, timeout: float) -> None:
    """Block until the sandbox's Job and its pods no longer exist (watched, not polled)."""
    deadline = time.monotonic() + timeout
    batch, core = _batch(conn.api_client()), _core(conn.api_client())
    name = job.name
    targets: tuple[tuple[Callable[..., Any], dict[str, Any], str], ...] = (
        (batch.list_namespaced_job, {"field_selector": f"metadata.name={name}"}, "Job"),
        (core.list_namespaced_pod, {"label_selector": job.selector}, "pods"),
    )
    for list_call, selector, what in targets:
        remaining: set[str] = set()
        for kind, obj in watch(list_call, job.namespace, resource_version=None,
                               deadline=deadline, **selector):
            if kind == "SYNC":
                remaining = {item["metadata"]["name"] for item in obj}
            elif kind == "DELETED":
                remaining.discard(obj["metadata"]["name"])
            elif kind == "ADDED":
                remaining.add(obj["metadata"]["name"])
            if not remaining:
                break
        else:
            raise SandboxError(f"sandbox {name}: {what} still present after {timeout:g}s "
                               f"of waiting for deletion: {sorted(remaining)}")
