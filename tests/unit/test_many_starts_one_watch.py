"""The shared start watcher's bookkeeping, with the API watch replaced by scripted streams:
who hears what, what a late joiner is replayed, how errors spread, and that its threads
start with the first waiter and are gone when the last one leaves."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import Configuration

from sandboxkit.backends.kubernetes import watchers
from sandboxkit.backends.kubernetes.api import JobRef, WatchStream
from sandboxkit.backends.kubernetes.client import Connection
from sandboxkit.backends.kubernetes.watchers import THREAD_PREFIX, NamespaceWatcher, Waiter
from sandboxkit.errors import PermissionDenied

TIMEOUT = 5.0


class Streams:
    """Scripted watches by kind ("pods", "events"): items put here are what they yield;
    an exception put here is raised by the watch."""

    def __init__(self) -> None:
        self.items: dict[str, queue.SimpleQueue[Any]] = {
            "pods": queue.SimpleQueue(), "events": queue.SimpleQueue()}
        self.opened = {"pods": 0, "events": 0}

    def watch(self, list_call: Any, namespace: str, *, resource_version: str | None,
              deadline: float, stream: WatchStream, **selector: str) -> Iterator[Any]:
        kind = "pods" if "label_selector" in selector else "events"
        self.opened[kind] += 1
        while not stream.stopped:
            try:
                item = self.items[kind].get(timeout=0.01)
            except queue.Empty:
                continue
            if isinstance(item, Exception):
                raise item
            yield item


@pytest.fixture
def streams(monkeypatch: pytest.MonkeyPatch) -> Streams:
    scripted = Streams()
    monkeypatch.setattr(watchers, "watch", scripted.watch)
    return scripted


@pytest.fixture
def watcher() -> Iterator[NamespaceWatcher]:
    connection = Connection(Configuration(), "ns", "test")
    yield NamespaceWatcher(connection, "ns")
    assert threads() == [], "a watch thread outlived its waiters"


def threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"{THREAD_PREFIX}-ns-")]


def job(name: str) -> JobRef:
    return JobRef(name, "ns", f"uid-{name}", f"controller-uid=uid-{name}")


def pod(job_name: str, phase: str = "Pending") -> dict[str, Any]:
    return {"metadata": {"name": f"{job_name}-pod", "uid": f"pod-{job_name}",
                         "ownerReferences": [{"kind": "Job", "uid": f"uid-{job_name}"}]},
            "status": {"phase": phase}}


def event(job_name: str, reason: str = "FailedCreate") -> dict[str, Any]:
    return {"metadata": {"uid": f"ev-{job_name}-{reason}"}, "reason": reason,
            "involvedObject": {"kind": "Job", "uid": f"uid-{job_name}"}}


def next_update(waiter: Waiter) -> Any:
    update = waiter.get(TIMEOUT)
    assert update is not None, "nothing arrived"
    return update


def test_many_waiters_share_one_watch_thread_that_ends_with_the_last(
    streams: Streams, watcher: NamespaceWatcher,
) -> None:
    waiters = [watcher.wait_for(job(f"j{i}")) for i in range(20)]
    assert [t.name for t in threads()] == [f"{THREAD_PREFIX}-ns-pods"]
    streams.items["pods"].put(("ADDED", pod("j3")))
    assert next_update(waiters[3]) == ("pod", ("ADDED", pod("j3")))
    assert all(w.get(0) is None for i, w in enumerate(waiters) if i != 3)
    (thread,) = threads()
    for waiter in waiters[:-1]:
        waiter.close()
    assert thread.is_alive()
    waiters[-1].close()
    assert not thread.is_alive()  # joined by the last to leave
    assert streams.opened == {"pods": 1, "events": 0}


def test_a_late_joiner_is_replayed_its_pods_and_events(streams: Streams,
                                                       watcher: NamespaceWatcher) -> None:
    with watcher.wait_for(job("first")) as first:
        first.watch_events()
        streams.items["events"].put(("SYNC", [event("late")]))
        streams.items["pods"].put(("SYNC", [pod("late", "Running"), pod("first")]))
        assert next_update(first) == ("pod", ("SYNC", pod("first")))
        with watcher.wait_for(job("late")) as late:
            assert {next_update(late)[0] for _ in range(2)} == {"pod", "event"}
        assert streams.opened == {"pods": 1, "events": 1}


def test_a_relist_reports_the_pods_that_vanished_as_deleted(
    streams: Streams, watcher: NamespaceWatcher,
) -> None:
    with watcher.wait_for(job("a")) as waiter:
        streams.items["pods"].put(("SYNC", [pod("a")]))
        assert next_update(waiter) == ("pod", ("SYNC", pod("a")))
        streams.items["pods"].put(("SYNC", []))  # after 410 Gone: the pod is no more
        assert next_update(waiter) == ("pod", ("DELETED", pod("a")))


def test_a_pod_watch_error_fails_every_waiter_and_the_next_start_begins_anew(
    streams: Streams, watcher: NamespaceWatcher,
) -> None:
    denied = PermissionDenied("no list pods", verb="list", resource="pods")
    a, b = watcher.wait_for(job("a")), watcher.wait_for(job("b"))
    streams.items["pods"].put(denied)
    assert next_update(a) == next_update(b) == ("error", denied)
    with watcher.wait_for(job("c")) as c:  # a new watch, not the failed one
        streams.items["pods"].put(("ADDED", pod("c")))
        assert next_update(c)[0] == "pod"
        assert streams.opened["pods"] == 2
    a.close()
    b.close()


def test_events_are_watched_on_demand_and_an_event_error_only_drops_them(
    streams: Streams, watcher: NamespaceWatcher,
) -> None:
    with watcher.wait_for(job("a")) as waiter:
        assert streams.opened["events"] == 0  # none asked: no event watch
        waiter.watch_events()
        waiter.watch_events()  # idempotent
        streams.items["events"].put(RuntimeError("events may not be watched"))
        streams.items["pods"].put(("ADDED", pod("a")))
        assert next_update(waiter) == ("pod", ("ADDED", pod("a")))  # pods unaffected
        for thread in threads():
            if thread.name.endswith("-events"):
                thread.join(TIMEOUT)  # it ends on its error
        waiter.watch_events()  # asked again: tried again
        streams.items["events"].put(("ADDED", event("a")))
        assert next_update(waiter) == ("event", event("a"))
        assert streams.opened["events"] == 2
