"""The TTL-after-finished controller: deletes finished Jobs ``ttlSecondsAfterFinished`` later.

As upstream, the clock starts at the lastTransitionTime of the Job's Complete or Failed
condition, the check runs on a timer rather than by polling, and the deletion uses Foreground
propagation with a resourceVersion precondition -- so a Job edited at the last moment (say,
its TTL raised) is re-examined instead of deleted, and its pods go before it does.
"""

from __future__ import annotations

from typing import Any

from .. import clock
from ..errors import ApiError
from ..resources import ResourceType, require
from .base import Controller, controller_user

__all__ = ["TTLAfterFinishedController", "expires_in"]

JOBS = require("batch", "v1", "jobs")
USER = controller_user("ttl-after-finished-controller")


def _finish_time(job: dict[str, Any]) -> str | None:
    for cond in job.get("status", {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return cond.get("lastTransitionTime")
    return None


def expires_in(job: dict[str, Any]) -> float | None:
    """Seconds until the Job may be deleted (<= 0: now), or None if it is not due ever."""
    ttl = job.get("spec", {}).get("ttlSecondsAfterFinished")
    finished = _finish_time(job)
    if ttl is None or finished is None or "deletionTimestamp" in job["metadata"]:
        return None
    elapsed = (clock.now() - clock.parse_time(finished)).total_seconds()
    return int(ttl) - elapsed


class TTLAfterFinishedController(Controller):
    """Cleans up finished Jobs whose ``ttlSecondsAfterFinished`` has passed."""

    name = "ttl-after-finished-controller"

    def observe(self, event_type: str, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt is JOBS and event_type != "DELETED" and expires_in(obj) is not None:
            self.queue.add((obj["metadata"]["namespace"], obj["metadata"]["name"]))

    def resync(self) -> None:
        for job in self.api.list(JOBS)[0]:
            self.observe("ADDED", JOBS, job)

    def reconcile(self, key: Any) -> None:
        namespace, name = key
        job = self.api.get_or_none(JOBS, namespace, name)
        if job is None:
            return
        remaining = expires_in(job)
        if remaining is None:
            return
        if remaining > 0:
            self.queue.add_after(key, remaining)
            return
        try:
            self.api.delete(
                JOBS, namespace, name, propagation_policy="Foreground",
                preconditions={"resourceVersion": job["metadata"]["resourceVersion"]},
            )
        except ApiError as exc:
            if exc.code != 404:
                raise
