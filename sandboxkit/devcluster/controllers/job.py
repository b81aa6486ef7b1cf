"""The batch/v1 Job controller, following kube-controller-manager's ``job-controller``.

It creates pods from the template (slow start, back-off after pod failures), counts finished
pods through the ``batch.kubernetes.io/job-tracking`` finalizer so none is missed or counted
twice, and finishes the Job the way Kubernetes 1.32 does: an interim ``FailureTarget`` or
``SuccessCriteriaMet`` condition first, the terminal ``Failed`` / ``Complete`` once no pod is
still terminating. Reasons, messages and events use the upstream wording because sandboxkit
and its troubleshooting notebook read them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import clock
from ..api import Api
from ..errors import ApiError
from ..resources import ResourceType, require
from .base import Controller, controller_user

__all__ = [
    "COMPONENT",
    "JOB_LABELS",
    "TRACKING_FINALIZER",
    "JobController",
    "controller_ref",
    "is_job_finished",
]

JOBS = require("batch", "v1", "jobs")
PODS = require("", "v1", "pods")
COMPONENT = "job-controller"
USER = controller_user(COMPONENT)
TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
# The labels the API server puts on a Job's selector and template (unless manualSelector).
JOB_LABELS = (
    "batch.kubernetes.io/controller-uid",
    "batch.kubernetes.io/job-name",
    "controller-uid",
    "job-name",
)
BACKOFF_LIMIT_REASON = "BackoffLimitExceeded"
BACKOFF_LIMIT_MESSAGE = "Job has reached the specified backoff limit"
DEADLINE_REASON = "DeadlineExceeded"
DEADLINE_MESSAGE = "Job was active longer than specified deadline"
TERMINAL_PHASES = ("Succeeded", "Failed")
# controller.SlowStartInitialBatchSize: pod creations start one at a time and double.
SLOW_START_BATCH = 1
MAX_PODS_PER_SYNC = 500


def controller_ref(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The ownerReference with ``controller: true``, as ``metav1.GetControllerOf``."""
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def _condition(job: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in job.get("status", {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return cond
    return None


def is_job_finished(job: dict[str, Any]) -> bool:
    return _condition(job, "Complete") is not None or _condition(job, "Failed") is not None


def _new_condition(type_: str, status: str, reason: str, message: str, now: str) -> dict[str, Any]:
    cond: dict[str, Any] = {"type": type_, "status": status, "lastProbeTime": now,
                            "lastTransitionTime": now}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def _ensure_condition(
    conditions: list[dict[str, Any]], type_: str, status: str, reason: str, message: str,
    now: str,
) -> bool:
    """``ensureJobConditionStatus``: update in place, or append unless the status is False."""
    for i, cond in enumerate(conditions):
        if cond.get("type") == type_:
            if (cond.get("status"), cond.get("reason", ""), cond.get("message", "")) == (
                status, reason, message
            ):
                return False
            conditions[i] = _new_condition(type_, status, reason, message, now)
            return True
    if status == "False":
        return False
    conditions.append(_new_condition(type_, status, reason, message, now))
    return True


def _phase(pod: dict[str, Any]) -> str:
    return pod.get("status", {}).get("phase", "Pending")


def _deleting(obj: dict[str, Any]) -> bool:
    return "deletionTimestamp" in obj["metadata"]


def _is_active(pod: dict[str, Any]) -> bool:
    return _phase(pod) not in TERMINAL_PHASES and not _deleting(pod)


def _is_terminating(pod: dict[str, Any]) -> bool:
    return _deleting(pod) and _phase(pod) not in TERMINAL_PHASES


def _is_ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions") or []
    )


def _tracked(pod: dict[str, Any]) -> bool:
    return TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or [])


def _only_replace_failed(job: dict[str, Any]) -> bool:
    spec = job["spec"]
    return spec.get("podReplacementPolicy") == "Failed" or bool(spec.get("podFailurePolicy"))


def _is_failed(pod: dict[str, Any], job: dict[str, Any]) -> bool:
    """A Failed pod, or -- unless only failed pods are replaced -- a deleted unfinished one."""
    if _phase(pod) == "Failed":
        return True
    return not _only_replace_failed(job) and _deleting(pod) and _phase(pod) != "Succeeded"


def _restarts(pods: list[dict[str, Any]]) -> int:
    total = 0
    for pod in pods:
        if _phase(pod) in ("Running", "Pending"):
            status = pod.get("status", {})
            for cs in (status.get("initContainerStatuses") or []) + (
                status.get("containerStatuses") or []
            ):
                total += int(cs.get("restartCount", 0))
    return total


def _past_backoff_limit_on_failure(job: dict[str, Any], pods: list[dict[str, Any]]) -> bool:
    """restartPolicy OnFailure: container restarts count against backoffLimit."""
    if job["spec"].get("template", {}).get("spec", {}).get("restartPolicy") != "OnFailure":
        return False
    limit = int(job["spec"].get("backoffLimit", 6))
    restarts = _restarts(pods)
    return restarts > 0 if limit == 0 else restarts >= limit


@dataclass
class _Backoff:
    """Pod-failure back-off of one Job: failures since the last success, and when."""

    failures: int = 0
    last_failure: datetime | None = None

    def remaining(self, now: datetime, base: float, cap: float) -> float:
        if self.failures == 0 or self.last_failure is None:
            return 0.0
        delay = min(base * 2 ** (self.failures - 1), cap)
        return max(delay - (now - self.last_failure).total_seconds(), 0.0)


@dataclass
class _Sync:
    """What one reconcile of a Job has found and decided."""

    job: dict[str, Any]
    active: int
    ready: int
    terminating: int
    # (condition type, reason, message) the Job is finishing with
    finished: tuple[str, str, str] | None = None


class JobController(Controller):
    """Runs batch/v1 Jobs: creates their pods, tracks them, and finishes the Job."""

    name = COMPONENT
    # DefaultJobApiBackOff / MaxJobApiBackOff: retries after a failed sync (pod creation).
    retry_base_delay = 1.0
    retry_max_delay = 60.0

    def __init__(
        self, api: Api, *, pod_failure_backoff: float = 10.0,
        max_pod_failure_backoff: float = 600.0,
    ) -> None:
        super().__init__(api)
        self.pod_failure_backoff = pod_failure_backoff
        self.max_pod_failure_backoff = max_pod_failure_backoff
        self._backoff: dict[tuple[str, str], _Backoff] = {}

    # -- change notifications ---------------------------------------------------------------
    def observe(self, event_type: str, rt: ResourceType, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        if rt is JOBS:
            self.queue.add((meta.get("namespace", ""), meta["name"]))
        elif rt is PODS:
            ref = controller_ref(obj)
            if ref is not None and ref.get("kind") == "Job" and ref.get(
                "apiVersion", ""
            ).startswith("batch/"):
                self.queue.add((meta.get("namespace", ""), ref["name"]))
            elif ref is None and _tracked(obj) and event_type != "DELETED":
                self.queue.add(("", f"orphan-pod/{meta.get('namespace', '')}/{meta['name']}"))

    def resync(self) -> None:
        for job in self.api.list(JOBS)[0]:
            self.queue.add((job["metadata"]["namespace"], job["metadata"]["name"]))
        for pod in self.api.list(PODS)[0]:
            self.observe("ADDED", PODS, pod)

    # -- reconcile ---------------------------------------------------------------------------
    def reconcile(self, key: Any) -> None:
        namespace, name = key
        if not namespace and name.startswith("orphan-pod/"):
            _, pod_ns, pod_name = name.split("/", 2)
            self._remove_tracking_finalizer(pod_ns, pod_name)
            return
        job = self.api.get_or_none(JOBS, namespace, name)
        if job is None:
            self._backoff.pop(key, None)
            self._release_pods(namespace, name, None)
            return
        uid = job["metadata"]["uid"]
        pods = []
        for pod in self.api.list(PODS, namespace)[0]:
            ref = controller_ref(pod)
            if ref is not None and ref.get("kind") == "Job" and ref.get("name") == name:
                if ref.get("uid") == uid:
                    pods.append(pod)
                elif _tracked(pod):  # left behind by an earlier Job of the same name
                    self._remove_tracking_finalizer(namespace, pod["metadata"]["name"])
        if is_job_finished(job):
            self._backoff.pop(key, None)
            for pod in pods:
                if _tracked(pod):
                    self._remove_tracking_finalizer(namespace, pod["metadata"]["name"])
            return
        self._sync(key, job, pods)

    def _release_pods(self, namespace: str, job_name: str, live_uid: str | None) -> None:
        """Drop the tracking finalizer from pods whose Job is gone, so they can be deleted."""
        for pod in self.api.list(PODS, namespace)[0]:
            ref = controller_ref(pod)
            if (ref is not None and ref.get("kind") == "Job" and ref.get("name") == job_name
                    and ref.get("uid") != live_uid and _tracked(pod)):
                self._remove_tracking_finalizer(namespace, pod["metadata"]["name"])

    def _remove_tracking_finalizer(self, namespace: str, name: str) -> None:
        """Remove the finalizer from the live pod; a pod already gone counts as done."""
        pod = self.api.get_or_none(PODS, namespace, name)
        if pod is None:
            return
        finalizers = pod["metadata"].get("finalizers") or []
        if TRACKING_FINALIZER not in finalizers:
            return
        kept = [f for f in finalizers if f != TRACKING_FINALIZER]
        if kept:
            pod["metadata"]["finalizers"] = kept
        else:
            pod["metadata"].pop("finalizers")
        try:
            self.api.update(PODS, pod, user=USER)
        except ApiError as exc:
            if exc.code != 404:
                raise

    def _sync(self, key: tuple[str, str], job: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        spec = job["spec"]
        old_status = copy.deepcopy(job.get("status") or {})
        status = job.setdefault("status", {})
        status["uncountedTerminatedPods"] = status.get("uncountedTerminatedPods") or {}
        now = clock.now()
        stamp = clock.rfc3339(now)
        suspended = spec.get("suspend") is True

        active_pods = [p for p in pods if _is_active(p)]
        tracked = [p for p in pods if _tracked(p)]
        new_succeeded = [p for p in tracked if _phase(p) == "Succeeded"]
        new_failed = [p for p in tracked if _is_failed(p, job)]
        succeeded = int(status.get("succeeded", 0)) + len(new_succeeded)
        failed = int(status.get("failed", 0)) + len(new_failed)
        if "startTime" not in status and not suspended:
            status["startTime"] = stamp
        self._record_backoff(key, new_succeeded, new_failed, now)

        state = _Sync(job, len(active_pods), sum(map(_is_ready, active_pods)),
                      sum(map(_is_terminating, pods)))
        state.finished = self._finishing(key, job, pods, failed, now)
        error: ApiError | None = None
        suspend_changed = False
        if state.finished is not None:
            deleted, deleted_ready = self._delete_pods(job, active_pods, drop_finalizer=False)
            if deleted != len(active_pods):
                state.finished = None
            state.active -= deleted
            state.ready -= deleted_ready
            state.terminating += deleted
        else:
            managed = "deletionTimestamp" not in job["metadata"]
            if managed:
                error = self._manage(key, state, active_pods, succeeded, now)
            completions = spec.get("completions")
            if completions is None:
                complete = succeeded > 0 and state.active == 0
            else:
                complete = succeeded >= int(completions) and state.active == 0
            if complete:
                state.finished = ("SuccessCriteriaMet", "", "")
            elif managed:
                suspend_changed = self._track_suspension(job, suspended, stamp)

        status["active"], status["ready"] = state.active, state.ready
        status["terminating"] = state.terminating
        self._count_and_release(state, tracked, old_status, stamp)
        finished = self._enact_finished(state, stamp)
        _tidy_status(status)
        if status != old_status or suspend_changed:
            self.api.update(JOBS, job, subresource="status", user=USER)
        if finished is not None:
            self._record_finished(job, finished)
        if error is not None:
            raise error

    def _finishing(
        self, key: tuple[str, str], job: dict[str, Any], pods: list[dict[str, Any]],
        failed: int, now: datetime,
    ) -> tuple[str, str, str] | None:
        """The condition the Job should finish with, judged before any pod is touched."""
        criteria = _condition(job, "SuccessCriteriaMet")
        if criteria is not None:
            return ("SuccessCriteriaMet", criteria.get("reason", ""), criteria.get("message", ""))
        target = _condition(job, "FailureTarget")
        if target is not None:
            return ("Failed", target.get("reason", ""), target.get("message", ""))
        spec, status = job["spec"], job["status"]
        if failed > int(spec.get("backoffLimit", 6)) or _past_backoff_limit_on_failure(job, pods):
            return ("FailureTarget", BACKOFF_LIMIT_REASON, BACKOFF_LIMIT_MESSAGE)
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None and "startTime" in status and spec.get("suspend") is not True:
            elapsed = (now - clock.parse_time(status["startTime"])).total_seconds()
            if elapsed >= int(deadline):
                return ("FailureTarget", DEADLINE_REASON, DEADLINE_MESSAGE)
            self.queue.add_after(key, int(deadline) - elapsed)
        return None

    def _manage(
        self, key: tuple[str, str], state: _Sync, active_pods: list[dict[str, Any]],
        succeeded: int, now: datetime,
    ) -> ApiError | None:
        """Create or delete pods so the Job runs as many as it wants (``manageJob``)."""
        job = state.job
        spec = job["spec"]
        if spec.get("suspend") is True:
            removed, removed_ready = self._delete_pods(job, active_pods, drop_finalizer=True)
            state.active -= removed
            state.ready -= removed_ready
            state.terminating += removed
            return None
        parallelism = int(spec.get("parallelism", 1))
        completions = spec.get("completions")
        if completions is None:
            want = state.active if succeeded > 0 else parallelism
        else:
            want = max(min(int(completions) - succeeded, parallelism), 0)
        if state.active > want:
            surplus = sorted(active_pods, key=_removal_order)[: state.active - want]
            removed, removed_ready = self._delete_pods(job, surplus, drop_finalizer=True)
            state.active -= removed
            state.ready -= removed_ready
            state.terminating += removed
            return None
        busy = state.terminating if _only_replace_failed(job) else 0
        diff = min(want - busy - state.active, MAX_PODS_PER_SYNC)
        if diff <= 0:
            return None
        wait = self._backoff.get(key, _Backoff()).remaining(
            now, self.pod_failure_backoff, self.max_pod_failure_backoff)
        if wait > 0:
            self.queue.add_after(key, wait)
            return None
        batch = min(diff, SLOW_START_BATCH)
        while diff > 0:
            for _ in range(batch):
                error = self._create_pod(job)
                if error is not None:
                    return error
                state.active += 1
            diff -= batch
            batch = min(2 * batch, diff)
        return None

    def _create_pod(self, job: dict[str, Any]) -> ApiError | None:
        pod = pod_from_template(job)
        try:
            created = self.api.create(PODS, pod, user=USER)
        except ApiError as exc:
            if not _namespace_terminating(exc):
                self.api.record_event(job, "Warning", "FailedCreate",
                                      f"Error creating: {exc.message}", COMPONENT)
            return exc
        self.api.record_event(job, "Normal", "SuccessfulCreate",
                              f"Created pod: {created['metadata']['name']}", COMPONENT)
        return None

    def _delete_pods(
        self, job: dict[str, Any], pods: list[dict[str, Any]], *, drop_finalizer: bool
    ) -> tuple[int, int]:
        """Delete pods, with events; returns (deleted, of which ready)."""
        deleted = deleted_ready = 0
        namespace = job["metadata"]["namespace"]
        for pod in pods:
            name = pod["metadata"]["name"]
            try:
                if drop_finalizer:
                    self._remove_tracking_finalizer(namespace, name)
                self.api.delete(PODS, namespace, name)
            except ApiError as exc:
                if exc.code != 404:
                    self.api.record_event(job, "Warning", "FailedDelete",
                                          f"Error deleting: {exc.message}", COMPONENT)
                    continue
            else:
                self.api.record_event(job, "Normal", "SuccessfulDelete",
                                      f"Deleted pod: {name}", COMPONENT)
            deleted += 1
            deleted_ready += _is_ready(pod)
        return deleted, deleted_ready

    def _track_suspension(self, job: dict[str, Any], suspended: bool, stamp: str) -> bool:
        conditions = job["status"].setdefault("conditions", [])
        if suspended:
            changed = _ensure_condition(conditions, "Suspended", "True", "JobSuspended",
                                        "Job suspended", stamp)
            if changed:
                self.api.record_event(job, "Normal", "Suspended", "Job suspended", COMPONENT)
            return changed
        changed = _ensure_condition(conditions, "Suspended", "False", "JobResumed",
                                    "Job resumed", stamp)
        if changed:
            self.api.record_event(job, "Normal", "Resumed", "Job resumed", COMPONENT)
            # activeDeadlineSeconds counts time continuously active, so it restarts here
            job["status"]["startTime"] = stamp
        return changed

    def _count_and_release(
        self, state: _Sync, tracked: list[dict[str, Any]], old_status: dict[str, Any],
        stamp: str,
    ) -> None:
        """Count finished pods into the status and drop their tracking finalizers.

        Upstream parks the UIDs in ``uncountedTerminatedPods`` between the two steps to
        survive a crash; here both happen in one synchronous step, so the list stays empty.
        """
        job, finished = state.job, state.finished
        status = job["status"]
        failing = finished is not None and finished[0] != "SuccessCriteriaMet"
        succeeded, failed = int(old_status.get("succeeded", 0)), int(old_status.get("failed", 0))
        for pod in tracked:
            is_failed = _is_failed(pod, job)
            if not ("deletionTimestamp" in job["metadata"] or finished is not None
                    or _phase(pod) == "Succeeded" or is_failed):
                continue
            self._remove_tracking_finalizer(job["metadata"]["namespace"], pod["metadata"]["name"])
            if _phase(pod) == "Succeeded":
                succeeded += 1
            elif is_failed or failing:
                failed += 1
        status["succeeded"], status["failed"] = succeeded, failed
        conditions = status.setdefault("conditions", [])
        if finished is not None and finished[0] == "FailureTarget":
            conditions.append(_new_condition("FailureTarget", "True", finished[1], finished[2],
                                             stamp))
            state.finished = ("Failed", finished[1], finished[2])
        elif finished is not None and finished[0] == "SuccessCriteriaMet":
            if _condition(job, "SuccessCriteriaMet") is None:
                conditions.append(_new_condition("SuccessCriteriaMet", "True", finished[1],
                                                 finished[2], stamp))
            state.finished = ("Complete", finished[1], finished[2])

    @staticmethod
    def _enact_finished(state: _Sync, stamp: str) -> tuple[str, str, str] | None:
        """Add the terminal condition once no pod of the Job is still terminating."""
        if state.finished is None or state.terminating > 0:
            return None
        type_, reason, message = state.finished
        status = state.job["status"]
        _ensure_condition(status.setdefault("conditions", []), type_, "True", reason, message,
                          stamp)
        if type_ == "Complete":
            status["completionTime"] = stamp
        return state.finished

    def _record_finished(self, job: dict[str, Any], finished: tuple[str, str, str]) -> None:
        type_, reason, message = finished
        if type_ == "Complete":
            completions = job["spec"].get("completions")
            if completions is not None and job["status"].get("succeeded", 0) > int(completions):
                self.api.record_event(
                    job, "Warning", "TooManySucceededPods",
                    "Too many succeeded pods running after completion count reached", COMPONENT)
            self.api.record_event(job, "Normal", "Completed", "Job completed", COMPONENT)
        else:
            self.api.record_event(job, "Warning", reason, message, COMPONENT)

    def _record_backoff(
        self, key: tuple[str, str], succeeded: list[dict[str, Any]],
        failed: list[dict[str, Any]], now: datetime,
    ) -> None:
        record = self._backoff.setdefault(key, _Backoff())
        if succeeded and not failed:
            record.failures, record.last_failure = 0, None
        elif failed:
            record.failures = len(failed) if succeeded else record.failures + len(failed)
            record.last_failure = now


def _removal_order(pod: dict[str, Any]) -> tuple[bool, bool, bool]:
    """Pods earliest in their life go first: unscheduled < pending < not ready."""
    return (bool(pod.get("spec", {}).get("nodeName")), _phase(pod) == "Running", _is_ready(pod))


def _namespace_terminating(exc: ApiError) -> bool:
    causes = (exc.details or {}).get("causes") or []
    return any(c.get("reason") == "NamespaceTerminating" for c in causes)


def _tidy_status(status: dict[str, Any]) -> None:
    """Drop zero counters and empty lists, as ``omitempty`` serializes JobStatus."""
    for counter in ("active", "succeeded", "failed"):
        if not status.get(counter):
            status.pop(counter, None)
    if not status.get("conditions"):
        status.pop("conditions", None)


def pod_from_template(job: dict[str, Any]) -> dict[str, Any]:
    """The pod the Job controller creates: template plus tracking finalizer and owner."""
    meta = job["metadata"]
    template = copy.deepcopy(job["spec"].get("template") or {})
    tmeta = template.get("metadata") or {}
    labels = dict(tmeta.get("labels") or {})
    if not job["spec"].get("manualSelector"):
        for label, value in zip(JOB_LABELS, (meta["uid"], meta["name"]) * 2, strict=True):
            labels.setdefault(label, value)
    pod_meta: dict[str, Any] = {
        "generateName": f"{meta['name']}-",
        "namespace": meta["namespace"],
        "labels": labels,
        "finalizers": [f for f in tmeta.get("finalizers") or [] if f != TRACKING_FINALIZER]
        + [TRACKING_FINALIZER],
        "ownerReferences": [{
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": meta["name"],
            "uid": meta["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }],
    }
    if tmeta.get("annotations"):
        pod_meta["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
            "spec": template.get("spec") or {}}
