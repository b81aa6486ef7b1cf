"""One shared watch per namespace for every sandbox start waiting there.

Why shared: ``init()`` waits for its pod by watch. Fifty sandboxes started at once from one
process, each with its own pod watch (and a second one on its Job's events), would hold
fifty to a hundred connections and threads, and make the API server serve as many watches.
A :class:`NamespaceWatcher` holds one pod watch per (API server and identity, namespace) --
the pods labelled ``app=ci-fixer-sandbox`` -- and, once some start has waited
:data:`EVENT_WATCH_DELAY` without a pod, one watch of the namespace's Job events (where the
Job controller says why it cannot create a pod: FailedCreate). Each change goes to the
starts waiting for that Job -- a pod by its ownerReferences, an event by its
``involvedObject.uid`` -- through the :class:`Waiter` each start holds.

A start that joins while the watch runs misses nothing: the watcher listed every sandbox
pod when it started and keeps the latest copy of each, and keeps the latest events of the
most recent Jobs; a joining start first gets those of its own Job.

Lifetime: the first start to wait starts the watch threads (named
``sandboxkit-watch-<namespace>-pods`` and ``-events``); the last one to leave stops them --
streams closed, threads joined -- so an idle process holds no watch. A pod watch that fails
(RBAC without ``list pods``, an outage) fails every start waiting on it with that typed
error, and the next start begins a new watch. An event watch that fails only costs
precision (the events sharpen the diagnosis, the pod watch decides): it is dropped, and the
next start that needs it tries again.

Watchers are keyed by :attr:`Connection.identity`, not by the server alone: a watch opened
with one caller's credentials must not serve another's, who may be denied what the first
may see. Listing, watching and relisting after 410 Gone are :func:`.api.watch`'s.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ...manifests import sandbox_selector
from .api import JobRef, WatchStream, watch
from .client import Connection

__all__ = [
    "EVENT_WATCH_DELAY",
    "THREAD_PREFIX",
    "NamespaceWatcher",
    "Waiter",
    "WatchRun",
    "namespace_watcher",
]

# A start without a pod after this long also needs the Job's events: a Job whose pod exists
# can no longer fail to create it, so in the common case no event watch is opened at all.
EVENT_WATCH_DELAY = 0.3
THREAD_PREFIX = "sandboxkit-watch"
# A watch lists again after this long: a periodic resync, as client-go's informers do.
RESYNC_SECONDS = 600.0
# How long the last start to leave waits for a stopped watch thread to end.
JOIN_TIMEOUT = 10.0
# Events kept for replay: those of this many Jobs, newest first, this many per Job.
MAX_KEPT_JOBS = 256
MAX_KEPT_EVENTS = 8

# ("pod", (change, pod)), ("event", event) or ("error", exception)
Update = tuple[str, Any]


@dataclass
class WatchRun:
    """One start-to-stop of a set of watch threads: stopping it closes their streams, so a
    stopped run's threads end and its late deliveries can be told apart and ignored."""

    stopped: threading.Event = field(default_factory=threading.Event)
    streams: dict[str, WatchStream] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)

    def stop(self) -> None:
        self.stopped.set()
        for stream in list(self.streams.values()):
            stream.stop()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in list(self.threads):
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self.threads)


class Waiter:
    """One start's share of a :class:`NamespaceWatcher`: the changes about its Job, in the
    order they arrived. A context manager; leaving it (:meth:`close`) leaves the watcher."""

    def __init__(self, watcher: NamespaceWatcher, job: JobRef) -> None:
        self.watcher, self.job = watcher, job
        self.updates: queue.SimpleQueue[Update] = queue.SimpleQueue()
        self.closed = False

    def get(self, timeout: float) -> Update | None:
        """The next update, or None when ``timeout`` seconds pass without one."""
        try:
            return self.updates.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def watch_events(self) -> None:
        """Have the watcher watch the namespace's Job events too (once; idempotent)."""
        self.watcher._start_events()

    def close(self) -> None:
        self.watcher._leave(self)

    def __enter__(self) -> Waiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NamespaceWatcher:
    """The shared pod (and Job event) watch of one namespace; get it with
    :func:`namespace_watcher`, wait on it with :meth:`wait_for`."""

    def __init__(self, connection: Connection, namespace: str) -> None:
        self.connection = connection
        self.namespace = namespace
        self._lock = threading.Lock()  # guards everything below
        self._waiters: dict[str, list[Waiter]] = {}  # by Job uid
        self._run: WatchRun | None = None
        self._stopping: list[WatchRun] = []
        self._pods: dict[str, dict[str, Any]] = {}  # by pod uid, the current run's
        self._events: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()  # by Job uid

    def __repr__(self) -> str:
        waiting = sum(len(waiters) for waiters in self._waiters.values())
        return (f"NamespaceWatcher({self.connection.configuration.host!r}, "
                f"{self.namespace!r}, {waiting} waiting, "
                f"{'running' if self._run else 'stopped'})")

    def wait_for(self, job: JobRef) -> Waiter:
        """Join: the returned waiter hears every change of the Job's pods (the current ones
        first) and, once events are watched, every event about the Job."""
        waiter = Waiter(self, job)
        with self._lock:
            self._waiters.setdefault(job.uid, []).append(waiter)
            if self._run is None:
                self._start()
                return waiter
            for pod in self._pods.values():
                if job.uid in _owner_uids(pod):
                    waiter.updates.put(("pod", ("SYNC", pod)))
            for event in self._events.get(job.uid, []):
                waiter.updates.put(("event", event))
        return waiter

    # --- starting and stopping ------------------------------------------------------------

    def _start(self) -> None:
        """A new run with its pod watch (called with the lock held)."""
        self._run = WatchRun()
        self._pods, self._events = {}, OrderedDict()
        self._spawn(self._run, "pods")

    def _spawn(self, run: WatchRun, kind: str) -> None:
        run.streams[kind] = WatchStream()
        thread = threading.Thread(target=self._watch_loop, args=(run, kind), daemon=True,
                                  name=f"{THREAD_PREFIX}-{self.namespace}-{kind}")
        run.threads.append(thread)
        thread.start()

    def _start_events(self) -> None:
        with self._lock:
            if self._run is not None and "events" not in self._run.streams:
                self._spawn(self._run, "events")

    def _leave(self, waiter: Waiter) -> None:
        with self._lock:
            if waiter.closed:
                return
            waiter.closed = True
            waiters = self._waiters.get(waiter.job.uid, [])
            waiters.remove(waiter)
            if not waiters:
                del self._waiters[waiter.job.uid]
            if self._waiters:
                return
            if self._run is not None:
                self._retire(self._run)
            stopping = list(self._stopping)
        for run in stopping:  # outside the lock: a thread ending may need it
            run.join(JOIN_TIMEOUT)
        with self._lock:
            self._stopping = [run for run in self._stopping if run.alive()]

    def _retire(self, run: WatchRun) -> None:
        """Stop ``run`` for good (called with the lock held); the next start starts anew."""
        run.stop()
        self._stopping.append(run)
        self._run = None
        self._pods, self._events = {}, OrderedDict()

    # --- the watch threads ----------------------------------------------------------------

    def _watch_loop(self, run: WatchRun, kind: str) -> None:
        from kubernetes.client import CoreV1Api

        api = self.connection.new_api_client()
        core = CoreV1Api(api)
        if kind == "pods":
            list_call, selector = core.list_namespaced_pod, {
                "label_selector": sandbox_selector()}
        else:  # FailedCreate, DeadlineExceeded... are all about the Job
            list_call, selector = core.list_namespaced_event, {
                "field_selector": "involvedObject.kind=Job"}
        try:
            while not run.stopped.is_set():
                for change, obj in watch(list_call, self.namespace, resource_version=None,
                                         deadline=time.monotonic() + RESYNC_SECONDS,
                                         stream=run.streams[kind], **selector):
                    if kind == "pods":
                        self._apply_pods(run, change, obj)
                    else:
                        self._apply_events(run, change, obj)
        except Exception as exc:
            self._failed(run, kind, exc)
        finally:
            with contextlib.suppress(Exception):
                api.close()

    def _failed(self, run: WatchRun, kind: str, exc: Exception) -> None:
        """A pod watch's error fails every start waiting on it (see the module docstring);
        an event watch's is dropped with the stream, for a later start to try again."""
        with self._lock:
            if run is not self._run:
                return  # stopped: the error is the stop's doing
            if kind == "events":
                run.streams.pop("events", None)
                return
            self._retire(run)
            waiters = [w for ws in self._waiters.values() for w in ws]
        for waiter in waiters:
            waiter.updates.put(("error", exc))

    def _apply_pods(self, run: WatchRun, change: str, obj: Any) -> None:
        with self._lock:
            if run is not self._run:
                return
            if change == "SYNC":  # a (re)list: what vanished meanwhile was deleted
                fresh = {_uid(pod): pod for pod in obj}
                changes = [("DELETED", pod) for uid, pod in self._pods.items()
                           if uid not in fresh] + [("SYNC", pod) for pod in obj]
                self._pods = fresh
            else:
                if change == "DELETED":
                    self._pods.pop(_uid(obj), None)
                else:
                    self._pods[_uid(obj)] = obj
                changes = [(change, obj)]
            for kind, pod in changes:
                for uid in _owner_uids(pod):
                    for waiter in self._waiters.get(uid, ()):
                        waiter.updates.put(("pod", (kind, pod)))

    def _apply_events(self, run: WatchRun, change: str, obj: Any) -> None:
        if change == "DELETED":
            return  # an event expiring says nothing about a start
        with self._lock:
            if run is not self._run:
                return
            for event in obj if change == "SYNC" else [obj]:
                uid = (event.get("involvedObject") or {}).get("uid", "")
                if not uid:
                    continue
                kept = self._events.setdefault(uid, [])
                kept[:] = [*kept, event][-MAX_KEPT_EVENTS:]
                self._events.move_to_end(uid)
                while len(self._events) > MAX_KEPT_JOBS:
                    self._events.popitem(last=False)
                for waiter in self._waiters.get(uid, ()):
                    waiter.updates.put(("event", event))


def _uid(obj: dict[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("uid", ""))


def _owner_uids(pod: dict[str, Any]) -> list[str]:
    refs = pod.get("metadata", {}).get("ownerReferences") or []
    return [str(ref.get("uid")) for ref in refs if ref.get("uid")]


_watchers: dict[tuple[str, str], NamespaceWatcher] = {}
_watchers_lock = threading.Lock()


def namespace_watcher(connection: Connection, namespace: str) -> NamespaceWatcher:
    """The process's watcher for ``namespace`` on ``connection``'s server, as its identity;
    it keeps the first caller's connection (an equal identity answers alike)."""
    key = (connection.identity, namespace)
    with _watchers_lock:
        watcher = _watchers.get(key)
        if watcher is None:
            watcher = _watchers[key] = NamespaceWatcher(connection, namespace)
        return watcher
