"""Taking an idle warm-pool sandbox for one client, safely across processes and hosts.

Why optimistic concurrency: any number of clients, on any machines, may claim from one pool
at once, and nothing but the API server sees them all. A claim is a merge PATCH of the
Job's ``sandboxkit.io/pool-state`` label from idle to claimed that carries the
``metadata.resourceVersion`` it was read at; the API server applies it only if the Job is
still at that version and answers 409 Conflict otherwise, as it does for every controller's
read-modify-write. Of two clients patching the same idle Job, exactly one succeeds; the
other re-reads it, finds it claimed and moves on to the next idle one. A 409 can also mean
only that something else changed the Job (the Job controller counting its pod ready): then
the re-read still says idle and the patch is retried at the new version.

The same conditional patch drains a pool (state ``draining`` before the delete), so a drain
never deletes a sandbox a client has just claimed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...manifests import (
    OWNER_ANNOTATION,
    POOL_CLAIMED,
    POOL_IDLE,
    POOL_LABEL,
    POOL_SPEC_LABEL,
    POOL_STATE_LABEL,
    pool_selector,
)
from .api import request_json
from .client import Connection
from .status import list_labelled

__all__ = ["MAX_CONFLICTS", "Claim", "claim_idle", "idle_members", "is_alive", "take"]

# Conflicts on one Job that are not a lost race (each re-read still says idle) before it is
# given up: a Job that changes this often is not a quiet idle sandbox.
MAX_CONFLICTS = 5
_MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class Claim:
    """What :func:`claim_idle` got: the claimed Job, or None and why none (for progress)."""

    job: dict[str, Any] | None
    reason: str = ""


def is_alive(job: dict[str, Any]) -> bool:
    """Not being deleted and not finished: a Job whose pod runs or will run."""
    if job.get("metadata", {}).get("deletionTimestamp"):
        return False
    conditions = (job.get("status") or {}).get("conditions") or []
    return not any(c.get("status") == "True" and c.get("type") in (
        "Complete", "Failed", "FailureTarget", "SuccessCriteriaMet") for c in conditions)


def _labels(job: dict[str, Any]) -> dict[str, str]:
    return job.get("metadata", {}).get("labels") or {}


def idle_members(conn: Connection, namespace: str, pool: str) -> list[dict[str, Any]]:
    """The pool's idle Jobs (one list call), finished ones included: alive ones with a ready
    pod first, then the newest first, the most time left before ``activeDeadlineSeconds``."""
    jobs = list_labelled(conn, "job", namespace, False, pool_selector(pool, POOL_IDLE))
    return sorted(jobs, reverse=True, key=lambda job: (
        is_alive(job), int((job.get("status") or {}).get("ready") or 0) > 0,
        job["metadata"].get("creationTimestamp", "")))


def claim_idle(conn: Connection, namespace: str, pool: str, spec: str,
               owner: str) -> Claim:
    """Claim one idle sandbox of ``pool`` whose configuration digest is ``spec``, rewriting
    its owner annotation to ``owner``; ``Claim(None, why)`` when there is none to take."""
    members = [job for job in idle_members(conn, namespace, pool) if is_alive(job)]
    matching = [job for job in members if _labels(job).get(POOL_SPEC_LABEL) == spec]
    if not members:
        return Claim(None, f"pool {pool} has no idle sandbox in namespace {namespace}")
    if not matching:
        return Claim(None, f"none of the {len(members)} idle sandboxes of pool {pool} has "
                           "this configuration (image, resources, env... differ)")
    for job in matching:
        taken = take(conn, job, POOL_CLAIMED, owner)
        if taken is not None:
            return Claim(taken)
    return Claim(None, f"other clients claimed the {len(matching)} idle sandboxes of pool "
                       f"{pool} first")


def take(conn: Connection, job: dict[str, Any], state: str,
         owner: str | None = None) -> dict[str, Any] | None:
    """Move idle ``job`` to ``state`` (and ``owner``) if no one else does first: the Job as
    patched, or None when it was claimed, drained or deleted meanwhile."""
    from kubernetes.client.exceptions import ApiException

    meta = job["metadata"]
    name, namespace, uid = meta["name"], meta["namespace"], meta["uid"]
    pool = _labels(job).get(POOL_LABEL)
    for _ in range(MAX_CONFLICTS):
        patch: dict[str, Any] = {"metadata": {
            "resourceVersion": job["metadata"]["resourceVersion"],
            "labels": {POOL_STATE_LABEL: state}}}
        if owner is not None:
            patch["metadata"]["annotations"] = {OWNER_ANNOTATION: owner}
        try:
            return request_json(conn.batch().patch_namespaced_job, name, namespace, patch,
                                _content_type=_MERGE_PATCH)
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status != 409:
                raise
        try:
            job = request_json(conn.batch().read_namespaced_job, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        labels = _labels(job)
        if (job["metadata"].get("uid") != uid or labels.get(POOL_LABEL) != pool
                or labels.get(POOL_STATE_LABEL) != POOL_IDLE or not is_alive(job)):
            return None  # someone else won
    return None
