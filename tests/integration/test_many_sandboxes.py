"""Many sandboxes from one process: fifty starts from threads share one watch.

Every start waits on its namespace's shared watcher (sandboxkit.backends.kubernetes.
watchers); these tests count its threads while the starts are in flight -- one pod watch,
at most one Job event watch -- and prove that the typed startup failures still reach the
start they belong to when good and bad sandboxes start side by side. Nothing here is
devcluster-specific: fifty 10m/16Mi busybox pods fit a kind node as well.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from sandbox_support import MakeSandbox

from sandboxkit import KubernetesSandbox
from sandboxkit.backends.kubernetes.api import JobRef
from sandboxkit.backends.kubernetes.watchers import THREAD_PREFIX, namespace_watcher
from sandboxkit.errors import ImagePullError, ServiceAccountMissing
from sandboxkit.manifests import sandbox_selector

MANY = 50


class ThreadCounter:
    """Samples the watcher threads of a namespace, by name, every few milliseconds."""

    def __init__(self, namespace: str) -> None:
        self.prefix = f"{THREAD_PREFIX}-{namespace}-"
        self.peak: dict[str, int] = {"pods": 0, "events": 0}
        self._stop = threading.Event()

    def threads(self) -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith(self.prefix)]

    def now(self) -> dict[str, int]:
        names = [t.name for t in self.threads()]
        return {kind: sum(name.endswith(f"-{kind}") for name in names)
                for kind in ("pods", "events")}

    def run(self) -> None:
        while not self._stop.wait(0.005):
            for kind, count in self.now().items():
                self.peak[kind] = max(self.peak[kind], count)

    @contextmanager
    def sampling(self) -> Iterator[ThreadCounter]:
        sampler = threading.Thread(target=self.run, name="test-thread-counter")
        sampler.start()
        try:
            yield self
        finally:
            self._stop.set()
            sampler.join()


def start_all(sandboxes: list[KubernetesSandbox]) -> list[BaseException | None]:
    """init() every sandbox at once, each on its own thread; what each raised (or None)."""
    def start(sandbox: KubernetesSandbox) -> BaseException | None:
        try:
            sandbox.init()
        except Exception as exc:
            return exc
        return None

    with ThreadPoolExecutor(len(sandboxes), thread_name_prefix="test-start") as pool:
        return list(pool.map(start, sandboxes))


def teardown_all(sandboxes: list[KubernetesSandbox]) -> None:
    with ThreadPoolExecutor(len(sandboxes), thread_name_prefix="test-teardown") as pool:
        list(pool.map(lambda sandbox: sandbox.teardown(wait=True), sandboxes))


def test_fifty_concurrent_starts_share_one_watch(make_sandbox: MakeSandbox, core: Any,
                                                 batch: Any, namespace: str) -> None:
    counter = ThreadCounter(namespace)
    before = set(threading.enumerate())
    sandboxes = [make_sandbox() for _ in range(MANY)]
    with counter.sampling():
        errors = start_all(sandboxes)
    assert errors == [None] * MANY
    assert all(sandbox.pod_name for sandbox in sandboxes)
    pods = core.list_namespaced_pod(namespace, label_selector=sandbox_selector()).items
    running = {pod.metadata.name for pod in pods if pod.status.phase == "Running"}
    assert {sandbox.pod_name for sandbox in sandboxes} <= running
    # One pod watch for fifty starts (busybox starts at once: no start needed the events).
    assert counter.peak["pods"] == 1
    assert counter.peak["events"] <= 1
    # The last start to leave stopped the watch: no thread outlives the starts.
    assert counter.now() == {"pods": 0, "events": 0}
    for thread in set(threading.enumerate()) - before:  # the pool's, ending
        thread.join(10)
    assert not set(threading.enumerate()) - before

    teardown_all(sandboxes)
    assert batch.list_namespaced_job(namespace, label_selector=sandbox_selector()).items == []
    assert core.list_namespaced_pod(namespace, label_selector=sandbox_selector()).items == []


def test_typed_failures_reach_their_own_start_through_the_shared_watch(
    make_sandbox: MakeSandbox, batch: Any, namespace: str,
) -> None:
    image = "registry.invalid/sandboxkit/no-such-image:0.0.1"
    good = [make_sandbox() for _ in range(8)]
    bad_image = make_sandbox(image=image)
    no_account = make_sandbox(service_account="no-such-account")  # FailedCreate: an event
    counter = ThreadCounter(namespace)
    with counter.sampling():
        errors = start_all([*good[:4], bad_image, *good[4:], no_account])
    assert errors[:4] == errors[5:9] == [None] * 4
    assert isinstance(errors[4], ImagePullError)
    assert errors[4].sandbox == bad_image.name and errors[4].image == image
    assert isinstance(errors[9], ServiceAccountMissing)
    assert "no-such-account" in str(errors[9])
    assert all(sandbox.pod_name for sandbox in good)
    assert counter.peak == {"pods": 1, "events": 1}
    # The failed starts deleted their Jobs; the good ones run on.
    live = {job.metadata.name for job in batch.list_namespaced_job(
        namespace, label_selector=sandbox_selector()).items
        if job.metadata.deletion_timestamp is None}
    assert live == {sandbox.name for sandbox in good}
    teardown_all(good)


def test_a_start_joining_a_running_watch_sees_its_pod(make_sandbox: MakeSandbox,
                                                      namespace: str) -> None:
    """A start that joins a watch already running (another waiter holds it) is served by
    that watch -- its pod from the watcher's copy or the stream -- not by one of its own."""
    late = make_sandbox()
    holder = JobRef("holder", namespace, "uid-of-no-job", "")
    counter = ThreadCounter(namespace)
    with namespace_watcher(late.connection, namespace).wait_for(holder):
        (watch_thread,) = counter.threads()  # started by the first waiter
        late.init()
        assert late.pod_name
        assert counter.threads() == [watch_thread]
    assert not watch_thread.is_alive()  # the last waiter to leave joined it
    late.teardown(wait=True)
