"""Which sandboxes exist (a DataFrame, one row each) and garbage collection of the dead ones.

Both read the cluster with list calls only -- Jobs labelled ``app=ci-fixer-sandbox`` and
their pods -- never one request per sandbox, so a namespace with hundreds of sandboxes costs
the same two round trips as one with two. Each row is read through the same status builder
as :meth:`KubernetesSandbox.status` and the widgets, so "Failed" or "ImagePullBackOff" means
the same thing in ``sandboxkit ls``, ``%sandbox_ls`` and a status panel.

Garbage collection deletes what can no longer be used or no longer has a user:

- a Job that finished (Failed, e.g. DeadlineExceeded, or Complete): its pod is gone or
  going, and the TTL controller would delete it only ``ttlSecondsAfterFinished`` later;
- an active Job older than its ``activeDeadlineSeconds`` (a Job controller that has not
  caught up yet);
- a Job whose owner process is gone: the ``sandboxkit.io/owner`` annotation names
  ``user@host pid=N``, and that host is this one and no process N runs here. An owner on
  another host is never judged: its pid says nothing about this machine's processes.
  An idle warm-pool sandbox is never judged by its owner either: it is meant to outlive
  the process that filled the pool (see :mod:`sandboxkit.pool`), so only finishing or its
  deadline ends it. A claimed one names its claimer as owner and follows the rules above.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .backends.kubernetes.api import JobRef
from .backends.kubernetes.client import Connection, connected
from .backends.kubernetes.lifecycle import delete_job
from .backends.kubernetes.status import list_statuses
from .manifests import (
    OWNER_ANNOTATION,
    POOL_CLAIMED,
    POOL_LABEL,
    POOL_STATE_LABEL,
    owner_process,
)
from .models import SandboxStatus

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COLUMNS", "GC_COLUMNS", "gc", "gc_reason", "list_sandboxes", "status_frame"]

# `status` is the one-word STATUS of `kubectl get pods` (Running, ImagePullBackOff...);
# `age` is kubectl's AGE text and `created` the timestamp to sort or filter by;
# `cpu` and `memory` are "request/limit" as the container spec gives them.
COLUMNS = ("name", "namespace", "phase", "status", "pod", "node", "image", "age", "created",
           "owner", "cpu", "memory")
GC_COLUMNS = ("name", "namespace", "reason", "deleted")


def _request_limit(status: SandboxStatus, resource: str) -> str:
    return f"{status.requests.get(resource, '-')}/{status.limits.get(resource, '-')}"


def list_sandboxes(
    namespace: str | None = None, *, all_namespaces: bool = False,
    connection: Connection | None = None,
) -> pd.DataFrame:
    """One row per sandbox Job (label ``app=ci-fixer-sandbox``), sorted by namespace and name.

    ``namespace`` None means the connection's (the kubeconfig context's); ``all_namespaces``
    lists every namespace the caller may list. Columns: :data:`COLUMNS`; ``phase`` is the
    Job's (Active, Complete, Failed, Deleting), ``status`` the pod's as kubectl words it.
    """
    with connected(connection) as conn:
        listed = list_statuses(conn, namespace, all_namespaces=all_namespaces)
    return status_frame(
        (status, (job["metadata"].get("annotations") or {}).get(OWNER_ANNOTATION, ""))
        for job, status in listed)


def status_frame(statuses: Iterable[tuple[SandboxStatus, str]]) -> pd.DataFrame:
    """The :data:`COLUMNS` DataFrame of ``(status, owner)`` pairs, sorted by namespace and
    name: what :func:`list_sandboxes` returns, and ``%sandbox_ls`` shows for a backend's own
    :meth:`~sandboxkit.backends.base.Sandbox.list_sandboxes`."""
    import pandas as pd

    now = datetime.now(UTC)
    rows = [{
        "name": status.name,
        "namespace": status.namespace,
        "phase": status.job_phase,
        "status": status.display_status,
        "pod": status.pod_name,
        "node": status.node,
        "image": status.image,
        "age": status.age(now),
        "created": status.created,
        "owner": owner,
        "cpu": _request_limit(status, "cpu"),
        "memory": _request_limit(status, "memory"),
    } for status, owner in statuses]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["created"] = pd.to_datetime(frame["created"], utc=True)
    return frame.sort_values(["namespace", "name"], ignore_index=True)


def _pid_running(pid: int) -> bool:
    """Whether process ``pid`` exists on this host; True when that cannot be ruled out."""
    if pid <= 0:
        return True  # 0 and negatives address process groups: not an owner we can judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, as another user's process
        return True
    return True


def _timestamp(value: str | None) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value or "")
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def gc_reason(job: dict[str, Any], status: SandboxStatus, *, now: datetime,
              host: str) -> str | None:
    """Why sandbox ``job`` should be deleted (see the module docstring), or None.

    ``host`` is this machine's name: only owners on it are checked for a live process.
    """
    if status.job_phase in ("Failed", "Complete"):
        condition = next((c for c in status.job_conditions
                          if c["type"] == status.job_phase and c["status"] == "True"), {})
        why = condition.get("reason")
        return f"Job {status.job_phase}" + (f": {why}" if why else "")
    if status.job_phase != "Active":
        return None  # already being deleted
    # The deadline counts from status.startTime, which a suspended Job does not have.
    deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
    started = _timestamp((job.get("status") or {}).get("startTime"))
    if deadline and started and now - started > timedelta(seconds=int(deadline)):
        return f"active longer than activeDeadlineSeconds={deadline}"
    labels = job["metadata"].get("labels") or {}
    if POOL_LABEL in labels and labels.get(POOL_STATE_LABEL) != POOL_CLAIMED:
        return None  # idle in a pool: claimable whoever filled it, until its deadline
    owner = (job["metadata"].get("annotations") or {}).get(OWNER_ANNOTATION, "")
    process = owner_process(owner)
    if process is not None and process[0] == host and not _pid_running(process[1]):
        return f"owner gone: no process {process[1]} on {host}"
    return None


def gc(
    namespace: str | None = None, *, dry_run: bool = False,
    connection: Connection | None = None,
) -> pd.DataFrame:
    """Delete (propagationPolicy Foreground) the sandboxes in ``namespace`` that finished,
    outlived their deadline or lost their owner; one row per sandbox collected.

    ``dry_run`` deletes nothing and reports what would go (``deleted`` False). ``deleted``
    is False too for a Job that vanished meanwhile. Columns: :data:`GC_COLUMNS`.
    """
    import pandas as pd

    now, host = datetime.now(UTC), socket.gethostname()
    rows = []
    with connected(connection) as conn:
        # The Jobs alone decide: a sandbox's phase and owner are the Job's.
        for job, status in list_statuses(conn, namespace, with_pods=False):
            reason = gc_reason(job, status, now=now, host=host)
            if reason is None:
                continue
            deleted = not dry_run and delete_job(conn, JobRef.from_job(job))
            rows.append({"name": status.name, "namespace": status.namespace,
                         "reason": reason, "deleted": deleted})
    return pd.DataFrame(rows, columns=list(GC_COLUMNS)).astype({"deleted": bool})
