"""The in-process API: validation, defaulting, admission, storage and events.

HTTP handlers and controllers both go through :class:`Api`, as every component of a real
cluster goes through the API server, so a pod the Job controller creates meets the same
admission (ServiceAccount existence, ResourceQuota) as one a user creates.

All methods are synchronous and must be called from the event loop's thread.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from . import clock, defaults, errors, selectors, validation
from .qos import qos_class
from .resources import ResourceType, require
from .store import Store

__all__ = [
    "PROPAGATION_POLICIES",
    "SYSTEM_USER",
    "Admission",
    "Api",
    "ChangeListener",
    "User",
    "add_warning",
    "collect_warnings",
    "pod_scheduled_condition",
    "unsupported_propagation",
]


@dataclass(frozen=True)
class User:
    """An authenticated identity (``user.Info`` in Kubernetes)."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)


SYSTEM_USER = User("system:apiserver", ("system:masters", "system:authenticated"))

# (event type "ADDED" | "MODIFIED" | "DELETED", resource type, object after the change)
ChangeListener = Callable[[str, ResourceType, dict[str, Any]], None]

# Admission plugin: (api, resource type, operation "CREATE" | "UPDATE", object, old object or
# None, user) -> None; mutates the object in place or raises ApiError to reject.
Admission = Callable[["Api", ResourceType, str, dict[str, Any], dict[str, Any] | None, User], None]


# The warnings of the request being served (admission's ``response.Warnings``): the HTTP
# layer turns them into ``Warning`` headers; in-process callers (controllers) have none.
_WARNINGS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "devcluster_warnings", default=None)


def add_warning(message: str) -> None:
    """Send ``message`` to the client as a ``Warning: 299`` header (kubectl prints it)."""
    sink = _WARNINGS.get()
    if sink is not None and message not in sink:
        sink.append(message)


@contextlib.contextmanager
def collect_warnings() -> Iterator[list[str]]:
    """Gather :func:`add_warning` calls made while serving one request."""
    sink: list[str] = []
    token = _WARNINGS.set(sink)
    try:
        yield sink
    finally:
        _WARNINGS.reset(token)


EVENTS = require("", "v1", "events")
PODS = require("", "v1", "pods")
GENERATION_KINDS = frozenset({"Job", "Deployment", "PodDisruptionBudget", "NetworkPolicy"})
# batch/v1 Jobs keep their pods unless told otherwise: the API server's legacy default.
ORPHAN_BY_DEFAULT = frozenset({"Job"})
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(_NAME_SUFFIX_ALPHABET) for _ in range(length))


PROPAGATION_POLICIES = ("Foreground", "Background", "Orphan")


def unsupported_propagation(policy: str) -> errors.ApiError:
    """``ValidateDeleteOptions``' refusal of a policy it does not know (unset is allowed)."""
    return errors.invalid("DeleteOptions", "meta.k8s.io", "", [{
        "reason": "FieldValueNotSupported", "field": "propagationPolicy",
        "message": f'Unsupported value: "{policy}": supported values: "Foreground", '
                   '"Background", "Orphan", "nil"'}])


def _deletion_finished(obj: dict[str, Any]) -> bool:
    """Whether an object being deleted can leave storage now.

    It can once its grace period is over (the kubelet ends a pod's with a zero-grace
    delete) and every finalizer -- metadata's, and a namespace's spec.finalizers -- is gone.
    """
    meta = obj["metadata"]
    if "deletionTimestamp" not in meta or meta.get("finalizers"):
        return False
    if obj.get("kind") == "Namespace" and obj.get("spec", {}).get("finalizers"):
        return False
    return not meta.get("deletionGracePeriodSeconds")


def pod_scheduled_condition(status: str, reason: str = "", message: str = "") -> dict[str, Any]:
    """The PodScheduled condition, as binding (True) and the scheduler (False) write it."""
    condition: dict[str, Any] = {"type": "PodScheduled", "status": status,
                                 "lastProbeTime": None, "lastTransitionTime": clock.rfc3339()}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


class Api:
    """Validation, defaulting, admission and storage behind one set of verbs."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store or Store()
        self.admission: list[Admission] = []
        self._event_index: dict[tuple[str, str, str, str, str], tuple[str, str]] = {}
        self._last_event_nanos = 0

    # -- reads ---------------------------------------------------------------------------
    def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        return self.store.get(rt, namespace, name)

    def get_or_none(
        self, rt: ResourceType, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        """:meth:`get`, but None when the object does not exist (404); other errors raise.

        Controllers and the kubelet read the object a key names afresh and treat a missing
        one as "nothing to do" (or as their own error), as ``apierrors.IsNotFound`` checks
        after a lister's ``Get`` do upstream.
        """
        try:
            return self.get(rt, namespace, name)
        except errors.ApiError as exc:
            if exc.code == 404:
                return None
            raise

    def list(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        return self.store.list(rt, namespace, self.matcher(rt, label_selector, field_selector))

    @staticmethod
    def matcher(
        rt: ResourceType, label_selector: str | None, field_selector: str | None
    ) -> Callable[[dict[str, Any]], bool]:
        """One predicate for list and watch, so both filter identically."""
        labels = selectors.parse_label_selector(label_selector or "")
        fields = selectors.parse_field_selector(rt.kind, field_selector or "")

        def matches(obj: dict[str, Any]) -> bool:
            return labels.matches(obj["metadata"].get("labels") or {}) and fields.matches(obj)

        return matches

    def subscribe(self, listener: ChangeListener) -> None:
        """Call ``listener`` after every change; it receives a shared copy it must not mutate."""
        self.store.add_listener(lambda change: listener(change.type, change.rt, change.obj))

    # -- writes --------------------------------------------------------------------------
    def create(
        self, rt: ResourceType, obj: dict[str, Any], *, user: User = SYSTEM_USER,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if not rt.namespaced:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{_random_suffix()}"
        for server_owned in ("uid", "resourceVersion", "deletionTimestamp", "generation",
                             "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(server_owned, None)
        # Decoding defaults, then validation, then admission, as the API server orders them.
        defaults.apply_defaults(rt, obj)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = clock.rfc3339()
        if rt.kind == "Job":
            defaults.default_job_selector(obj, meta["uid"])
        validation.validate(rt, obj)
        for plugin in self.admission:
            plugin(self, rt, "CREATE", obj, None, user)
        if rt is PODS:  # the pod strategy's PrepareForCreate: clients cannot set status
            obj["status"] = {"phase": "Pending", "qosClass": qos_class(obj)}
        if rt.kind in GENERATION_KINDS:
            meta["generation"] = 1
        if dry_run:
            return obj
        return self.store.put_new(rt, obj)

    def update(
        self, rt: ResourceType, obj: dict[str, Any], *, subresource: str | None = None,
        user: User = SYSTEM_USER, dry_run: bool = False,
    ) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        name = meta.get("name", "")
        old = self.store.get(rt, meta.get("namespace") if rt.namespaced else None, name)
        wanted_rv = meta.get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(
                rt.plural, rt.group, name,
                "the object has been modified; please apply your changes to the latest "
                "version and try again",
            )
        new = self._merge_update(rt, old, obj, subresource)
        validation.validate(rt, new, old=old)
        if subresource != "status":
            for plugin in self.admission:
                plugin(self, rt, "UPDATE", new, old, user)
        if new == old or dry_run:
            return new
        if _deletion_finished(new):
            return self.store.remove(rt, new["metadata"].get("namespace"), name)
        return self.store.replace(rt, new)

    def bind(
        self, namespace: str, name: str, node_name: str, *, uid: str | None = None
    ) -> dict[str, Any]:
        """``pods/binding``: assign a node once, and record the pod as scheduled.

        The only way a pod's ``spec.nodeName`` changes after creation, as in Kubernetes;
        binding a pod that already has a node is a 409.
        """
        pod = self.store.get(PODS, namespace, name)
        meta, spec = pod["metadata"], pod["spec"]
        if uid and meta["uid"] != uid:
            raise errors.conflict("pods", "", name, "the UID in the binding does not match")
        if meta.get("deletionTimestamp"):
            raise errors.conflict("pods", "", name, "pod is being deleted, cannot be assigned")
        if spec.get("nodeName"):
            raise errors.conflict(
                "pods", "", name, f"pod {name} is already assigned to node \"{spec['nodeName']}\""
            )
        spec["nodeName"] = node_name
        status = pod.setdefault("status", {})
        conditions = [c for c in status.get("conditions") or [] if c["type"] != "PodScheduled"]
        status["conditions"] = [pod_scheduled_condition("True"), *conditions]
        return self.store.replace(PODS, pod)

    @staticmethod
    def _merge_update(
        rt: ResourceType, old: dict[str, Any], obj: dict[str, Any], subresource: str | None
    ) -> dict[str, Any]:
        """Apply the parts of ``obj`` a client may change through this (sub)resource."""
        if subresource == "status":
            new = copy.deepcopy(old)
            new["status"] = obj.get("status", {})
            return new
        new = obj
        new["apiVersion"], new["kind"] = rt.api_version, rt.kind
        meta, old_meta = new["metadata"], old["metadata"]
        for server_owned in ("uid", "creationTimestamp", "deletionTimestamp",
                             "deletionGracePeriodSeconds", "generation", "namespace"):
            if server_owned in old_meta:
                meta[server_owned] = old_meta[server_owned]
            else:
                meta.pop(server_owned, None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if "status" in rt.subresources:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        if rt.kind in GENERATION_KINDS and new.get("spec") != old.get("spec"):
            meta["generation"] = old_meta.get("generation", 1) + 1
        return new

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        *,
        propagation_policy: str | None = None,
        grace_period_seconds: int | None = None,
        preconditions: dict[str, str] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Delete as the API server does: graceful for pods, finalizers for propagation.

        Returns the object: removed from storage, or still present with a deletionTimestamp
        while its grace period runs or its finalizers are pending.
        """
        obj = self.store.get(rt, namespace, name)
        meta = obj["metadata"]
        self._check_preconditions(rt, obj, preconditions or {})
        policy = propagation_policy or ("Orphan" if rt.kind in ORPHAN_BY_DEFAULT else "Background")
        if policy not in PROPAGATION_POLICIES:
            raise unsupported_propagation(policy)
        grace = self._grace_period(obj, grace_period_seconds)
        finalizers: list[str] = list(meta.get("finalizers") or [])
        wanted = {"Foreground": "foregroundDeletion", "Orphan": "orphan"}.get(policy)
        if "deletionTimestamp" not in meta or wanted:
            finalizers = [f for f in finalizers if f not in ("foregroundDeletion", "orphan")]
            if wanted:
                finalizers.append(wanted)
        if finalizers:
            meta["finalizers"] = finalizers
        else:
            meta.pop("finalizers", None)
        previous_grace = meta.get("deletionGracePeriodSeconds")
        if previous_grace is None or grace < previous_grace:
            meta["deletionGracePeriodSeconds"] = grace
        meta.setdefault("deletionTimestamp", clock.rfc3339(
            clock.now() + timedelta(seconds=meta["deletionGracePeriodSeconds"])))
        if rt.kind == "Namespace" and not rt.group:
            # The namespace registry's Delete switches the phase in the same write, so the
            # DELETE reply (and every watcher) already sees Terminating.
            obj.setdefault("status", {})["phase"] = "Terminating"
        if dry_run:
            return obj
        if _deletion_finished(obj):
            return self.store.remove(rt, namespace, name)
        return self.store.replace(rt, obj)

    @staticmethod
    def _check_preconditions(
        rt: ResourceType, obj: dict[str, Any], preconditions: dict[str, str]
    ) -> None:
        """``rest.BeforeDelete``'s early precondition check.

        Its Conflict names the object by Kind (``Pod``, ``Job.batch``), not by resource, and
        says what a mismatch likely means.
        """
        meta = obj["metadata"]
        for field_name, label, likely in (
            ("uid", "UID", "deleted and then recreated"),
            ("resourceVersion", "ResourceVersion", "modified"),
        ):
            wanted = preconditions.get(field_name)
            if wanted and wanted != meta.get(field_name):
                raise errors.conflict(
                    rt.kind, rt.group, meta["name"],
                    f"the {label} in the precondition ({wanted}) does not match the {label} in "
                    f"record ({meta.get(field_name)}). The object might have been {likely}",
                )

    @staticmethod
    def _grace_period(obj: dict[str, Any], requested: int | None) -> int:
        """Pods wait for the kubelet; an unscheduled or finished pod goes at once."""
        if obj["kind"] != "Pod":
            return 0
        spec, phase = obj.get("spec", {}), obj.get("status", {}).get("phase")
        if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
            return 0
        if requested is not None:
            return max(requested, 0)
        return int(spec.get("terminationGracePeriodSeconds", 30))

    # -- events --------------------------------------------------------------------------
    def record_event(
        self, obj: dict[str, Any], type_: str, reason: str, message: str, component: str
    ) -> dict[str, Any]:
        """Record a core/v1 Event, folding repeats into ``count`` as the event recorder does."""
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        key = (meta.get("uid", ""), type_, reason, message, component)
        stamp = clock.rfc3339()
        known = self._event_index.get(key)
        if known is not None and self.store.exists(EVENTS, *known):
            event = self.store.get(EVENTS, *known)
            event["count"] = event.get("count", 1) + 1
            event["lastTimestamp"] = stamp
            return self.store.replace(EVENTS, event)
        # The event recorder's naming: the object's name and the time in hex nanoseconds,
        # so listing (which sorts by name) shows an object's events in the order they came.
        self._last_event_nanos = max(time.time_ns(), self._last_event_nanos + 1)
        name = f"{meta['name']}.{self._last_event_nanos:x}"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()),
                         "creationTimestamp": stamp},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", "v1"),
                "kind": obj.get("kind", ""),
                "name": meta["name"],
                "namespace": meta.get("namespace", ""),
                "uid": meta.get("uid", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message,
            "source": {"component": component},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "type": type_,
            "eventTime": None,
            "reportingComponent": component,
            "reportingInstance": "",
        }
        if not event["involvedObject"]["namespace"]:
            del event["involvedObject"]["namespace"]
        self._event_index[key] = (namespace, name)
        return self.store.put_new(EVENTS, event)

