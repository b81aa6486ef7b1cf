"""What every devcluster controller shares: a keyed work queue and a start/stop lifecycle.

Kubernetes controllers never act inside a watch callback: the informer handler only adds a
key to a rate-limited work queue, and a worker reconciles the key against the current state.
Bursts of changes to one object collapse into a single reconcile, failures are retried with
exponential back-off, and timers (deadlines, TTLs) re-add a key later instead of polling.
The devcluster follows the same shape on its asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Hashable
from typing import Any

from ..api import Api, User
from ..resources import ResourceType

__all__ = ["Controller", "WorkQueue", "controller_user"]

log = logging.getLogger(__name__)


def controller_user(name: str) -> User:
    """The identity kube-controller-manager uses for one controller (its service account)."""
    return User(
        f"system:serviceaccount:kube-system:{name}",
        ("system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"),
    )


class WorkQueue:
    """A de-duplicating queue of keys with delayed and rate-limited re-adds.

    A key that is already waiting is not queued twice; ``add_after`` keeps only the
    earliest pending timer per key; ``add_rate_limited`` doubles the delay on every
    consecutive failure of a key until ``forget`` resets it.
    """

    def __init__(self, base_delay: float = 0.005, max_delay: float = 60.0) -> None:
        self._queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self._waiting: set[Hashable] = set()
        self._timers: dict[Hashable, tuple[float, asyncio.TimerHandle]] = {}
        self._failures: dict[Hashable, int] = {}
        self._base_delay = base_delay
        self._max_delay = max_delay

    def add(self, key: Hashable) -> None:
        if key in self._waiting:
            return
        self._waiting.add(key)
        self._queue.put_nowait(key)

    def add_after(self, key: Hashable, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        pending = self._timers.get(key)
        if pending is not None:
            if pending[0] <= due:
                return
            pending[1].cancel()
        self._timers[key] = (due, loop.call_at(due, self._fire, key))

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: Hashable) -> None:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        self.add_after(key, min(self._base_delay * (2**failures), self._max_delay))

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    async def get(self) -> Hashable:
        key = await self._queue.get()
        self._waiting.discard(key)
        return key

    def shutdown(self) -> None:
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    def __len__(self) -> int:
        return self._queue.qsize()


class Controller:
    """Base class: subscribe to API changes, reconcile keys on one worker task.

    Subclasses implement :meth:`observe` (map a change to keys; must only enqueue) and
    :meth:`reconcile` (synchronous, reads the API afresh). A reconcile that raises is
    retried with back-off, as controller-manager's work queues do.
    """

    name = "controller"
    retry_base_delay = 0.005
    retry_max_delay = 60.0

    def __init__(self, api: Api) -> None:
        self.api = api
        self.queue = WorkQueue(self.retry_base_delay, self.retry_max_delay)
        self._task: asyncio.Task[None] | None = None
        self._subscribed = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Subscribe, queue the work the current state needs, and spawn the worker."""
        if self.running:
            return
        if not self._subscribed:
            self.api.subscribe(self._on_change)
            self._subscribed = True
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)
        self.resync()

    async def stop(self) -> None:
        task, self._task = self._task, None
        self.queue.shutdown()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _on_change(self, event_type: str, rt: ResourceType, obj: dict[str, Any]) -> None:
        if self.running:
            self.observe(event_type, rt, obj)

    def observe(self, event_type: str, rt: ResourceType, obj: dict[str, Any]) -> None:
        """Queue the keys a change affects. Called synchronously inside the API write."""

    def resync(self) -> None:
        """Queue every key the current state needs (at start)."""

    def reconcile(self, key: Any) -> None:
        raise NotImplementedError

    async def _run(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                self.reconcile(key)
            except Exception:  # a controller must survive any one object's failure
                log.debug("%s: reconcile of %r failed; retrying", self.name, key, exc_info=True)
                self.queue.add_rate_limited(key)
            else:
                self.queue.forget(key)
            # let API callers and other controllers run between keys
            await asyncio.sleep(0)
