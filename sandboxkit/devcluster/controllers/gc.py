"""The garbage collector: cascading deletion through ownerReferences.

The API server only marks an owner (``foregroundDeletion`` / ``orphan`` finalizer, or removes
it outright for Background); this controller finishes the job as kube-controller-manager's
garbage collector does:

- a dependent whose owners are all gone is deleted (propagation from its own finalizers,
  Background otherwise), and references to vanished owners are dropped when a live owner
  remains;
- an owner waiting for its dependents (foregroundDeletion) gets its blocking dependents
  (``blockOwnerDeletion: true``) deleted, and loses the finalizer only once they have left
  storage -- so a Job deleted in the foreground disappears after its pods, not before;
- an owner being orphaned gets its dependents' references to it removed, then the finalizer.

A uid-to-object index built from change notifications finds dependents without listing
every resource on each change; all decisions re-read the live objects.
"""

from __future__ import annotations

from typing import Any

from ..api import Api
from ..errors import ApiError
from ..resources import RESOURCES, ResourceType, lookup_kind
from .base import Controller, controller_user

__all__ = ["FOREGROUND", "ORPHAN", "GarbageCollector"]

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
USER = controller_user("generic-garbage-collector")

# (resource type, namespace or "", name)
Ref = tuple[ResourceType, str, str]


def _ref(rt: ResourceType, obj: dict[str, Any]) -> Ref:
    meta = obj["metadata"]
    return (rt, meta.get("namespace", "") if rt.namespaced else "", meta["name"])


def _finalizers(obj: dict[str, Any]) -> list[str]:
    return list(obj["metadata"].get("finalizers") or [])


def _waiting_for_dependents(obj: dict[str, Any]) -> bool:
    return "deletionTimestamp" in obj["metadata"] and FOREGROUND in _finalizers(obj)


class GarbageCollector(Controller):
    """Deletes dependents of deleted owners and completes Foreground/Orphan deletions."""

    name = "garbage-collector"

    def __init__(self, api: Api) -> None:
        super().__init__(api)
        self._by_uid: dict[str, Ref] = {}
        self._owners: dict[Ref, frozenset[str]] = {}
        self._dependents: dict[str, set[Ref]] = {}
        # uids of owners whose deletion waits on this controller (foreground or orphan)
        self._deleting: set[str] = set()

    # -- index ---------------------------------------------------------------------------------
    def _index(self, rt: ResourceType, obj: dict[str, Any], gone: bool) -> Ref:
        ref = _ref(rt, obj)
        uid = obj["metadata"].get("uid", "")
        for owner_uid in self._owners.pop(ref, frozenset()):
            self._dependents.get(owner_uid, set()).discard(ref)
        if gone:
            if self._by_uid.get(uid) == ref:
                del self._by_uid[uid]
            return ref
        if uid:
            self._by_uid[uid] = ref
        owners = frozenset(o.get("uid", "") for o in obj["metadata"].get("ownerReferences") or [])
        if owners:
            self._owners[ref] = owners
            for owner_uid in owners:
                self._dependents.setdefault(owner_uid, set()).add(ref)
        return ref

    def observe(self, event_type: str, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt.ephemeral:
            return
        owners_before = self._owners.get(_ref(rt, obj), frozenset())
        ref = self._index(rt, obj, event_type == "DELETED")
        uid = obj["metadata"].get("uid", "")
        self._deleting.discard(uid)
        if event_type == "DELETED":
            for dependent in sorted(self._dependents.get(uid, set()), key=_sort_key):
                self.queue.add(("dependent", dependent))
        elif "deletionTimestamp" in obj["metadata"] and {FOREGROUND, ORPHAN} & set(
            _finalizers(obj)
        ):
            self._deleting.add(uid)
            self.queue.add(("owner", ref))
        owners = self._owners.get(ref, frozenset())
        if event_type != "DELETED" and any(o not in self._by_uid for o in owners):
            self.queue.add(("dependent", ref))
        # an owner waiting for its dependents re-checks whenever one of them changes or leaves
        for owner_uid in owners_before | owners:
            owner = self._by_uid.get(owner_uid)
            if owner is not None and owner_uid in self._deleting:
                self.queue.add(("owner", owner))

    def resync(self) -> None:
        everything: list[tuple[ResourceType, dict[str, Any]]] = []
        for rt in RESOURCES:
            if rt.ephemeral:
                continue
            for obj in self.api.list(rt)[0]:
                self._index(rt, obj, gone=False)
                everything.append((rt, obj))
        for rt, obj in everything:
            self.observe("ADDED", rt, obj)

    # -- reconcile -----------------------------------------------------------------------------
    def reconcile(self, key: Any) -> None:
        kind, ref = key
        obj = self._get(ref)
        if obj is None:
            return
        if kind == "owner":
            self._process_owner(ref, obj)
        else:
            self._process_dependent(ref, obj)

    def _get(self, ref: Ref) -> dict[str, Any] | None:
        rt, namespace, name = ref
        return self.api.get_or_none(rt, namespace or None, name)

    def _owner_state(self, dependent_ref: Ref, owner_ref: dict[str, Any]) -> str:
        """``solid``, ``dangling`` (gone or replaced) or ``waiting`` (foreground deletion)."""
        rt = lookup_kind(owner_ref.get("apiVersion", ""), owner_ref.get("kind", ""))
        if rt is None:
            return "solid"  # a kind we cannot resolve is never treated as absent
        namespace = dependent_ref[1] if rt.namespaced else ""
        owner = self._get((rt, namespace, owner_ref.get("name", "")))
        if owner is None or owner["metadata"].get("uid") != owner_ref.get("uid"):
            return "dangling"
        return "waiting" if _waiting_for_dependents(owner) else "solid"

    def _process_dependent(self, ref: Ref, obj: dict[str, Any]) -> None:
        """``attemptToDeleteItem``: delete an object none of whose owners remains."""
        refs = obj["metadata"].get("ownerReferences") or []
        if not refs:
            return
        states = {o.get("uid", ""): self._owner_state(ref, o) for o in refs}
        if "solid" in states.values():
            stale = {uid for uid, state in states.items() if state != "solid"}
            if stale:
                self._drop_owner_refs(ref, stale)
            return
        if "deletionTimestamp" in obj["metadata"]:
            return
        if "waiting" in states.values() and self._dependents.get(obj["metadata"].get("uid", "")):
            policy = "Foreground"
        elif ORPHAN in _finalizers(obj):
            policy = "Orphan"
        elif FOREGROUND in _finalizers(obj):
            policy = "Foreground"
        else:
            policy = "Background"
        self._delete(ref, policy)

    def _process_owner(self, ref: Ref, owner: dict[str, Any]) -> None:
        if "deletionTimestamp" not in owner["metadata"]:
            return
        uid = owner["metadata"]["uid"]
        finalizers = _finalizers(owner)
        if ORPHAN in finalizers:
            self._orphan_dependents(uid)
            self._remove_finalizer(ref, ORPHAN)
        elif FOREGROUND in finalizers:
            blocking = []
            for dep_ref in sorted(self._dependents.get(uid, set()), key=_sort_key):
                dependent = self._get(dep_ref)
                if dependent is not None and _blocks(dependent, uid):
                    blocking.append((dep_ref, dependent))
            if not blocking:
                self._remove_finalizer(ref, FOREGROUND)
                return
            for dep_ref, dependent in blocking:
                if not _waiting_for_dependents(dependent):
                    self._process_dependent(dep_ref, dependent)

    def _orphan_dependents(self, owner_uid: str) -> None:
        for dep_ref in sorted(self._dependents.get(owner_uid, set()), key=_sort_key):
            self._drop_owner_refs(dep_ref, {owner_uid})

    def _drop_owner_refs(self, ref: Ref, uids: set[str]) -> None:
        obj = self._get(ref)
        if obj is None:
            return
        refs = obj["metadata"].get("ownerReferences") or []
        kept = [o for o in refs if o.get("uid") not in uids]
        if len(kept) == len(refs):
            return
        if kept:
            obj["metadata"]["ownerReferences"] = kept
        else:
            obj["metadata"].pop("ownerReferences", None)
        self.api.update(ref[0], obj, user=USER)

    def _remove_finalizer(self, ref: Ref, finalizer: str) -> None:
        obj = self._get(ref)
        if obj is None or finalizer not in _finalizers(obj):
            return
        remaining = [f for f in _finalizers(obj) if f != finalizer]
        if remaining:
            obj["metadata"]["finalizers"] = remaining
        else:
            obj["metadata"].pop("finalizers", None)
        self.api.update(ref[0], obj, user=USER)

    def _delete(self, ref: Ref, policy: str) -> None:
        rt, namespace, name = ref
        try:
            self.api.delete(rt, namespace or None, name, propagation_policy=policy)
        except ApiError as exc:
            if exc.code != 404:
                raise


def _blocks(dependent: dict[str, Any], owner_uid: str) -> bool:
    return any(
        o.get("uid") == owner_uid and o.get("blockOwnerDeletion")
        for o in dependent["metadata"].get("ownerReferences") or []
    )


def _sort_key(ref: Ref) -> tuple[str, str, str]:
    return (ref[0].qualified, ref[1], ref[2])
