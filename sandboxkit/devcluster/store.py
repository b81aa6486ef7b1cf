"""Object storage with resourceVersions and a bounded watch history, as etcd plus the watch cache.

Every change bumps one cluster-wide resourceVersion, is appended to a bounded history and is
fanned out to live watches. A watch that asks to resume from a version older than the history
gets ``410 Expired`` -- the contract informers rely on to know they must relist.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .resources import ResourceType

__all__ = ["Change", "Store", "Watch"]

HISTORY_LIMIT = 5000


@dataclass(frozen=True)
class Change:
    """One stored change: the object after it, and before it (None when added)."""

    resource_version: int
    type: str
    rt: ResourceType
    obj: dict[str, Any]
    old: dict[str, Any] | None


Matcher = Callable[[dict[str, Any]], bool]


@dataclass(eq=False)
class Watch:
    """A live subscription; ``queue`` receives ``(type, object)`` pairs already filtered."""

    rt: ResourceType
    namespace: str | None
    matches: Matcher
    queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = field(
        default_factory=asyncio.Queue
    )

    def offer(self, change: Change) -> None:
        """Translate a change into what this watch sees, as the watch cache does.

        An object that stops matching the selector is reported DELETED, one that starts
        matching ADDED, so a filtered watch stays consistent with a filtered list.
        """
        if change.rt is not self.rt:
            return
        if self.namespace and change.obj["metadata"].get("namespace") != self.namespace:
            return
        now_matches = change.type != "DELETED" and self.matches(change.obj)
        was_matching = change.old is not None and self.matches(change.old)
        if change.type == "DELETED":
            if self.matches(change.obj):
                self.queue.put_nowait(("DELETED", change.obj))
        elif now_matches and (was_matching or change.type == "ADDED"):
            self.queue.put_nowait((change.type, change.obj))
        elif now_matches:
            self.queue.put_nowait(("ADDED", change.obj))
        elif was_matching and change.old is not None:
            # The object as it last matched, at the version of the change that made it leave.
            gone = copy.deepcopy(change.old)
            gone["metadata"]["resourceVersion"] = str(change.resource_version)
            self.queue.put_nowait(("DELETED", gone))


class Store:
    """In-memory objects keyed by resource, namespace and name."""

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._counter = itertools.count(1)
        self.resource_version = 0
        self._history: deque[Change] = deque(maxlen=HISTORY_LIMIT)
        self._watches: set[Watch] = set()
        self._listeners: list[Callable[[Change], None]] = []

    @staticmethod
    def _key(rt: ResourceType, namespace: str | None, name: str) -> tuple[str, str, str]:
        return (rt.qualified, namespace or "" if rt.namespaced else "", name)

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        found = self._objects.get(self._key(rt, namespace, name))
        if found is None:
            raise errors.not_found(rt.plural, rt.group, name)
        return copy.deepcopy(found)

    def exists(self, rt: ResourceType, namespace: str | None, name: str) -> bool:
        return self._key(rt, namespace, name) in self._objects

    def list(
        self, rt: ResourceType, namespace: str | None = None, matches: Matcher | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        items = [
            copy.deepcopy(obj)
            for (res, ns, _), obj in sorted(self._objects.items())
            if res == rt.qualified
            and (not namespace or ns == namespace)
            and (matches is None or matches(obj))
        ]
        return items, str(self.resource_version)

    def _commit(
        self, type_: str, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        self.resource_version = next(self._counter)
        # A DELETED event carries the version at which the object went away, as etcd's
        # delete revision does; watchers resume from it.
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        change = Change(self.resource_version, type_, rt, copy.deepcopy(obj), old)
        self._history.append(change)
        for watch in list(self._watches):
            watch.offer(change)
        for listener in list(self._listeners):
            listener(change)
        return copy.deepcopy(obj)

    def put_new(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        key = self._key(rt, meta.get("namespace"), meta["name"])
        if key in self._objects:
            raise errors.already_exists(rt.plural, rt.group, meta["name"])
        stored = copy.deepcopy(obj)
        self._objects[key] = stored
        return self._commit("ADDED", rt, stored, None)

    def replace(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a new version; the caller has already checked preconditions."""
        meta = obj["metadata"]
        key = self._key(rt, meta.get("namespace"), meta["name"])
        old = self._objects.get(key)
        if old is None:
            raise errors.not_found(rt.plural, rt.group, meta["name"])
        stored = copy.deepcopy(obj)
        self._objects[key] = stored
        return self._commit("MODIFIED", rt, stored, old)

    def remove(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        key = self._key(rt, namespace, name)
        old = self._objects.pop(key, None)
        if old is None:
            raise errors.not_found(rt.plural, rt.group, name)
        return self._commit("DELETED", rt, copy.deepcopy(old), old)

    def compact(self) -> None:
        """Forget the change history so far; watches can then resume only from now on.

        A real API server's watch cache is filled by a list when the server starts and can
        replay nothing older (``410 Expired``). The devcluster compacts once it starts
        serving, after bootstrapping, to the same effect: its bootstrap writes, from
        resourceVersion 1 on, are never resumable.
        """
        self._history.clear()

    def add_listener(self, listener: Callable[[Change], None]) -> None:
        self._listeners.append(listener)

    def watch(
        self,
        rt: ResourceType,
        namespace: str | None,
        resource_version: str | None,
        matches: Matcher,
    ) -> Watch:
        """Open a watch, replaying history after ``resource_version`` or the current state.

        An empty or ``"0"`` version starts with synthetic ADDED events for every matching
        object, as the API server does; a version older than the retained history raises
        410 with the API server's ``too old resource version`` message.
        """
        watch = Watch(rt, namespace, matches)
        if not resource_version or resource_version == "0":
            items, _ = self.list(rt, namespace, matches)
            for item in items:
                watch.queue.put_nowait(("ADDED", item))
        else:
            try:
                since = int(resource_version)
            except ValueError:
                raise errors.bad_request(
                    f'invalid resource version "{resource_version}"'
                ) from None
            oldest = (
                self._history[0].resource_version if self._history else self.resource_version + 1
            )
            if since < oldest - 1 and since < self.resource_version:
                raise errors.gone(f"too old resource version: {since} ({oldest - 1})")
            for change in self._history:
                if change.resource_version > since:
                    watch.offer(change)
        self._watches.add(watch)
        return watch

    def stop_watch(self, watch: Watch) -> None:
        self._watches.discard(watch)
        watch.queue.put_nowait(None)

    def close_all_watches(self) -> None:
        for watch in list(self._watches):
            self.stop_watch(watch)
