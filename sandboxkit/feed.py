"""One set of watches per namespace, shared by every live view of its sandboxes.

Why a shared feed: each status widget watching on its own would hold three API watches
(Job, pods, events) per sandbox, and a notebook with a list and a few panels would hold
dozens. A :class:`NamespaceFeed` holds three per (cluster, namespace) however many views
subscribe: sandbox Jobs and pods (label ``app=ci-fixer-sandbox``) and the namespace's
Events, kept only when they are about a sandbox's Job or pod (Events carry no labels, so
they are matched by ``involvedObject.uid``). It keeps the latest copy of each object and,
on every change, rebuilds the affected sandbox's :class:`SandboxStatus` with the same
builder :meth:`KubernetesSandbox.status` uses, and calls that sandbox's subscribers and the
all-sandbox ones.

Lifetime is reference-counted by subscriptions: :func:`feed_for` hands out one feed per
(API server, namespace); its watch threads start with the first subscription and stop --
streams closed, threads joined -- when the last one closes. Each watch lists first and
resumes (relisting after 410 Gone) through :func:`sandboxkit.backends.kubernetes.api.watch`.

Callbacks run on a feed thread (or, for the replay of the current state, on the thread
that subscribes), one at a time and in order. Keep them quick -- set a widget's value,
append to a list -- and never block on the feed. An exception in one is logged and does
not stop the feed or the other subscribers.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .backends.kubernetes.api import WatchStream, watch
from .backends.kubernetes.client import Connection, connect
from .backends.kubernetes.status import newest_pod, sandbox_status
from .backends.kubernetes.watchers import WatchRun
from .manifests import sandbox_selector
from .models import SandboxStatus

if TYPE_CHECKING:
    from .backends.base import Sandbox

__all__ = ["NamespaceFeed", "Subscription", "feed_for", "sandbox_feed"]

log = logging.getLogger(__name__)

Callback = Callable[[SandboxStatus], None]

# A watch ends after this long and starts over with a fresh list: a periodic resync, as
# client-go's informers do, so a missed change cannot linger.
RESYNC_SECONDS = 600.0
# A watch that fails (API down, permission removed) is retried after a back-off growing
# to this many seconds; the error is kept in NamespaceFeed.error meanwhile.
MAX_BACKOFF_SECONDS = 30.0
# How long close() waits for a watch thread to notice it was stopped.
JOIN_TIMEOUT = 10.0
# Events about objects no known sandbox owns (yet: an event can arrive before its pod's
# watch delivers the pod) are kept for this many objects, newest first, then dropped.
MAX_UNCLAIMED_OBJECTS = 256
KINDS = ("jobs", "pods", "events")
# Set on a thread while it runs callbacks: closing a subscription there must not wait for
# threads that may be queued behind the very delivery in progress.
_delivering = threading.local()


class Subscription:
    """A subscriber's handle; :meth:`close` ends it (idempotent, safe from a callback)."""

    def __init__(self, feed: NamespaceFeed, callback: Callback, name: str | None) -> None:
        self.feed, self.callback, self.name = feed, callback, name
        self.closed = False

    def close(self) -> None:
        self.feed._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _Run(WatchRun):
    """One start-to-stop of the watch threads; a stopped run's late events are ignored."""

    synced: set[str] = field(default_factory=set)  # kinds whose first list has arrived


class NamespaceFeed:
    """Live statuses of the sandboxes in one namespace; get one with :func:`feed_for`."""

    def __init__(self, connection: Connection, namespace: str) -> None:
        self.connection = connection
        self.namespace = namespace
        self._errors: dict[str, Exception] = {}  # by kind, until it lists again
        self._lock = threading.Lock()  # guards the state below
        self._dispatching = threading.RLock()  # one delivery at a time, in order
        self._subscriptions: list[Subscription] = []
        self._run: _Run | None = None
        self._stopping: list[_Run] = []
        self._synced = threading.Event()
        self._jobs: dict[str, dict[str, Any]] = {}  # by Job name (= sandbox name)
        self._pods: dict[str, dict[str, Any]] = {}  # by pod name
        self._events: dict[str, dict[str, dict[str, Any]]] = {}  # involved uid -> uid -> ev
        self._delivered: dict[str, SandboxStatus] = {}  # by sandbox name, see _snapshot

    def __repr__(self) -> str:
        state = "running" if self._run else "stopped"
        return (f"NamespaceFeed({self.connection.configuration.host!r}, "
                f"{self.namespace!r}, {len(self._subscriptions)} subscribers, {state})")

    # --- reading --------------------------------------------------------------------------

    @property
    def error(self) -> Exception | None:
        """Why a watch is failing (a Jobs, pods or Events one), None while all work."""
        return next(iter(self._errors.values()), None)

    @property
    def synced(self) -> bool:
        """The first lists of Jobs, pods and Events have arrived and every subscriber has
        had the state they describe."""
        return self._synced.is_set()

    def wait_synced(self, timeout: float) -> bool:
        """Block until :attr:`synced` (True) or ``timeout`` seconds pass (False); only a
        feed with subscribers ever syncs."""
        return self._synced.wait(timeout)

    def status(self, name: str) -> SandboxStatus | None:
        """The sandbox's latest status; None when the feed knows no Job or pod of it."""
        with self._lock:
            return self._build(name) if name in self._names() else None

    def statuses(self) -> list[SandboxStatus]:
        """Every sandbox in the namespace, by name."""
        with self._lock:
            return [self._build(name) for name in sorted(self._names())]

    # --- subscribing ----------------------------------------------------------------------

    def subscribe(self, callback: Callback, name: str | None = None) -> Subscription:
        """Call ``callback(status)`` on every change of sandbox ``name`` (every sandbox when
        None). Once the feed is synced, the current state is delivered first: the named
        sandbox's status (``job_phase`` "Missing" if it does not exist) or each sandbox's.
        The first subscription starts the watches."""
        subscription = Subscription(self, callback, name)
        with self._lock:
            self._subscriptions.append(subscription)
            if self._run is None:
                self._start()
        with self._dispatching:
            if self._synced.is_set():
                names = {name} if name is not None else None
                self._deliver(self._snapshot(names, [subscription]))
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if not subscription.closed:
                subscription.closed = True
                self._subscriptions.remove(subscription)
            if not self._subscriptions and self._run is not None:
                self._stopping.append(self._run)
                self._run.stop()
                self._run = None
                self._synced.clear()
                self._jobs, self._pods, self._events, self._delivered = {}, {}, {}, {}
                self._errors = {}
            stopping = list(self._stopping)
        if getattr(_delivering, "active", False):
            return  # called from a callback: the threads end once deliveries return
        for run in stopping:
            run.join(JOIN_TIMEOUT)
        with self._lock:
            self._stopping = [r for r in self._stopping if r.alive()]

    # --- the watch threads ----------------------------------------------------------------

    def _start(self) -> None:
        run = _Run()
        self._run = run
        for kind in KINDS:
            run.streams[kind] = WatchStream()
            thread = threading.Thread(target=self._watch_loop, args=(run, kind), daemon=True,
                                      name=f"sandboxkit-feed-{self.namespace}-{kind}")
            run.threads.append(thread)
        for thread in run.threads:
            thread.start()

    def _watch_loop(self, run: _Run, kind: str) -> None:
        from kubernetes.client import BatchV1Api, CoreV1Api

        api = self.connection.new_api_client()
        core, batch = CoreV1Api(api), BatchV1Api(api)
        list_call, selector = {
            "jobs": (batch.list_namespaced_job, {"label_selector": sandbox_selector()}),
            "pods": (core.list_namespaced_pod, {"label_selector": sandbox_selector()}),
            "events": (core.list_namespaced_event, {}),
        }[kind]
        failures, reported = 0, ""
        try:
            while not run.stopped.is_set():
                try:
                    for change, obj in watch(
                            list_call, self.namespace, resource_version=None,
                            deadline=time.monotonic() + RESYNC_SECONDS,
                            stream=run.streams[kind], **selector):
                        if run.stopped.is_set():
                            return
                        self._apply(run, kind, change, obj)
                        failures = 0
                except Exception as exc:
                    if run.stopped.is_set():
                        return
                    failures += 1
                    if str(exc) != reported:  # once per distinct error, not per retry
                        reported = str(exc)
                        log.warning("sandboxkit feed: watching %s in %s failed (%s); "
                                    "retrying", kind, self.namespace, exc)
                    self._failed(run, kind, exc)
                    run.stopped.wait(min(2.0 ** failures, MAX_BACKOFF_SECONDS))
        finally:
            with contextlib.suppress(Exception):
                api.close()

    def _failed(self, run: _Run, kind: str, exc: Exception) -> None:
        """Remember the error; a kind that cannot even list counts as synced (with nothing),
        so Jobs and pods still show when, say, Events may not be watched."""
        with self._lock:
            if run is not self._run:
                return
            self._errors[kind] = exc
            first_sync = self._mark_synced(run, kind)
        if first_sync:
            self._first_delivery(run)

    # --- applying changes -----------------------------------------------------------------

    def _apply(self, run: _Run, kind: str, change: str, obj: Any) -> None:
        with self._lock:
            if run is not self._run:
                return
            if change == "SYNC":
                self._errors.pop(kind, None)
            changed = {"jobs": self._apply_job, "pods": self._apply_pod,
                       "events": self._apply_event}[kind](change, obj)
            complete = run.synced == set(KINDS)
            first_sync = change == "SYNC" and self._mark_synced(run, kind)
        if first_sync:
            self._first_delivery(run)
        elif complete:
            self._notify(changed)

    @staticmethod
    def _mark_synced(run: _Run, kind: str) -> bool:
        """Note ``kind``'s first list; True when that completes the run's first sync."""
        complete = run.synced == set(KINDS)
        run.synced.add(kind)
        return not complete and run.synced == set(KINDS)

    def _first_delivery(self, run: _Run) -> None:
        """Give every subscriber the synced state, then mark the feed synced: a subscriber
        arriving later gets the replay in :meth:`subscribe` instead, so none misses it."""
        with self._dispatching:
            if run is self._run:
                self._deliver(self._snapshot(None))
                self._synced.set()

    def _apply_job(self, change: str, obj: Any) -> set[str]:
        if change == "SYNC":
            old, self._jobs = self._jobs, {j["metadata"]["name"]: j for j in obj}
            return set(old) | set(self._jobs)
        name = obj["metadata"]["name"]
        if change == "DELETED":
            self._jobs.pop(name, None)
        else:
            self._jobs[name] = obj
        return {name}

    def _apply_pod(self, change: str, obj: Any) -> set[str]:
        if change == "SYNC":
            old, self._pods = self._pods, {p["metadata"]["name"]: p for p in obj}
            return {_job_of(p) for p in (*old.values(), *self._pods.values())} - {""}
        name = obj["metadata"]["name"]
        if change == "DELETED":
            self._pods.pop(name, None)
        else:
            self._pods[name] = obj
        return {_job_of(obj)} - {""}

    def _apply_event(self, change: str, obj: Any) -> set[str]:
        if change == "SYNC":
            self._events = {}
            for event in obj:
                self._keep_event(event)
            return set(self._names())
        uid = (obj.get("involvedObject") or {}).get("uid", "")
        if change == "DELETED":
            self._events.get(uid, {}).pop(obj["metadata"].get("uid", ""), None)
        elif not self._keep_event(obj):
            return set()
        owner = self._owners().get(uid)
        return {owner} if owner else set()

    def _keep_event(self, event: dict[str, Any]) -> bool:
        involved = event.get("involvedObject") or {}
        if involved.get("kind") not in ("Job", "Pod") or not involved.get("uid"):
            return False
        self._events.setdefault(involved["uid"], {})[event["metadata"].get("uid", "")] = event
        self._drop_unclaimed()
        return True

    def _drop_unclaimed(self) -> None:
        """Bound the events kept for objects no sandbox owns: the oldest objects go first."""
        known = self._owners()
        unclaimed = [uid for uid in self._events if uid not in known]
        for uid in unclaimed[:max(0, len(unclaimed) - MAX_UNCLAIMED_OBJECTS)]:
            del self._events[uid]

    # --- building statuses (called with _lock held) ---------------------------------------

    def _names(self) -> set[str]:
        return set(self._jobs) | ({_job_of(p) for p in self._pods.values()} - {""})

    def _owners(self) -> dict[str, str]:
        """uid of every sandbox Job and pod -> the sandbox's name."""
        owners = {j["metadata"].get("uid", ""): name for name, j in self._jobs.items()}
        owners.update({p["metadata"].get("uid", ""): _job_of(p) for p in self._pods.values()})
        return owners

    def _build(self, name: str) -> SandboxStatus:
        job = self._jobs.get(name)
        job_uid = job["metadata"].get("uid") if job else None
        pods = [p for p in self._pods.values() if _job_of(p) == name
                and (job_uid is None or _controller(p).get("uid") == job_uid)]
        pod = newest_pod(pods)
        uids = [(obj or {}).get("metadata", {}).get("uid", "") for obj in (job, pod)]
        events = [e for uid in uids if uid for e in self._events.get(uid, {}).values()]
        return sandbox_status(name, self.namespace, job, pod, events)

    # --- delivering -----------------------------------------------------------------------

    def _snapshot(self, names: Iterable[str] | None,
                  subscriptions: list[Subscription] | None = None,
                  ) -> list[tuple[Subscription, SandboxStatus]]:
        """(subscriber, status) pairs to deliver for ``names`` (None: every sandbox and
        every named subscriber's), built under the lock so each is consistent.

        Called with ``_dispatching`` held. Without ``subscriptions`` (a change, not a
        replay) a status equal to the one last delivered is skipped: most changes to an
        object (a resourceVersion, a managed field) change nothing a subscriber shows.
        """
        with self._lock:
            targets = subscriptions if subscriptions is not None else self._subscriptions
            if names is None:
                names = self._names() | {s.name for s in targets if s.name is not None}
            statuses = {name: self._build(name) for name in sorted(names)}
            if subscriptions is None:
                statuses = {name: status for name, status in statuses.items()
                            if self._delivered.get(name) != status}
                self._delivered.update(statuses)
                for name in set(statuses) - self._names():  # gone: nothing left to compare
                    del self._delivered[name]
            return [(sub, status) for name, status in statuses.items() for sub in targets
                    if not sub.closed and sub.name in (None, name)]

    def _notify(self, names: set[str]) -> None:
        if not names:
            return
        with self._dispatching:
            self._deliver(self._snapshot(names))

    @staticmethod
    def _deliver(pairs: list[tuple[Subscription, SandboxStatus]]) -> None:
        _delivering.active = True
        try:
            for subscription, status in pairs:
                if subscription.closed:
                    continue
                try:
                    subscription.callback(status)
                except Exception:  # one broken view must not blind the others
                    log.exception("sandboxkit feed: subscriber %r failed on %s",
                                  subscription.callback, status.name)
        finally:
            _delivering.active = False


def _controller(pod: dict[str, Any]) -> dict[str, Any]:
    """The ownerReference of the Job controlling ``pod`` ({} for a pod no Job controls)."""
    refs = pod.get("metadata", {}).get("ownerReferences") or []
    return next((r for r in refs if r.get("kind") == "Job" and r.get("controller")), {})


def _job_of(pod: dict[str, Any]) -> str:
    return str(_controller(pod).get("name", ""))


_feeds: dict[tuple[str, str], NamespaceFeed] = {}
_feeds_lock = threading.Lock()


def feed_for(connection: Connection | None = None, namespace: str | None = None,
             ) -> NamespaceFeed:
    """The process's feed for ``namespace`` (None: the connection's) on that API server;
    ``connection`` None connects as kubectl would (kubeconfig, else in-cluster).

    Feeds are shared by (server URL, namespace): two sandboxes in one namespace, or a
    sandbox and a list, use the same watches. The feed keeps the first caller's connection.
    """
    connection = connection or connect()
    namespace = namespace or connection.namespace
    key = (str(connection.configuration.host), namespace)
    with _feeds_lock:
        feed = _feeds.get(key)
        if feed is None:
            feed = _feeds[key] = NamespaceFeed(connection, namespace)
        return feed


def sandbox_feed(sandbox: Sandbox) -> NamespaceFeed | None:
    """The shared feed of a Kubernetes sandbox's namespace (what status widgets subscribe
    to instead of polling ``status()``); None for a backend whose statuses are not
    watched (docker, local)."""
    from .backends.kubernetes.sandbox import KubernetesSandbox

    if not isinstance(sandbox, KubernetesSandbox):
        return None
    return feed_for(sandbox.connection, sandbox.namespace)
