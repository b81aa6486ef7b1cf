"""Fifty sandboxes from one process: concurrent against sequential starts, in one run.

Three phases, each starting ``--sandboxes`` (50) sandboxes and timing until all are
Running, each torn down (and waited for) before the next:

- sequential ``init()`` calls, one after another -- the baseline;
- the same ``init()`` calls from one thread each, at once: they share one watch per
  namespace (sandboxkit.backends.kubernetes.watchers);
- the raw official client from one thread each, at once: create the Job, then a watch of
  its own on its pods, as ``init()`` did before the shared watch -- the baseline for the
  client's sockets and threads.

While a phase runs, a sampler records the client's peak open sockets (``/proc/self/fd``
entries that are sockets) and threads (``threading.active_count()``). The figures to
compare across machines are the ratios to the sequential phase.

    .venv/bin/python bench/many_bench.py                 # its own devcluster
    KUBECONFIG=~/.kube/config .venv/bin/python bench/many_bench.py --sandboxes 20
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devcluster_bench import Cluster, client_pod_start, connect
from kubernetes import client

from sandboxkit import KubernetesSandbox

SMALL = {"cpu_request": "10m", "memory_request": "16Mi"}  # 50 fit a node with room to spare


def open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed since it was listed
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    sockets: int = 0
    threads: int = 0

    @contextmanager
    def measured(self) -> Iterator[None]:
        """Time the block; sample sockets and threads every 5 ms while it runs."""
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.005):
                self.sockets = max(self.sockets, open_sockets())
                self.threads = max(self.threads, threading.active_count())

        sampler = threading.Thread(target=sample, name="bench-sampler")
        sampler.start()
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds = time.perf_counter() - started
            stop.set()
            sampler.join()


def sandboxes(cluster: Cluster, count: int) -> list[KubernetesSandbox]:
    return [KubernetesSandbox(image=cluster.image, namespace=cluster.namespace,
                              api_client=cluster.api, **SMALL) for _ in range(count)]


def at_once(work: Callable[[Any], object], items: list[Any]) -> None:
    with ThreadPoolExecutor(len(items), thread_name_prefix="bench") as pool:
        list(pool.map(work, items))


def clean(cluster: Cluster, started: list[KubernetesSandbox], raw: list[str]) -> None:
    """Tear everything down and wait, so the next phase finds an empty node."""
    if started:
        at_once(lambda sandbox: sandbox.teardown(wait=True), started)
    batch = client.BatchV1Api(cluster.api)
    for name in raw:
        batch.delete_namespaced_job(name, cluster.namespace, propagation_policy="Foreground")
    core = client.CoreV1Api(cluster.api)
    until = time.monotonic() + 120
    while (core.list_namespaced_pod(cluster.namespace).items
           or batch.list_namespaced_job(cluster.namespace).items):
        if time.monotonic() > until:
            raise RuntimeError("the previous phase's pods did not go away within 120s")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sandboxes", type=int, default=50, help="sandboxes per phase (50)")
    parser.add_argument("--image", default="busybox")
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    args = parser.parse_args(argv)
    n = args.sandboxes
    with tempfile.TemporaryDirectory(prefix="sandboxkit-bench-") as tmp, \
            connect(args.kubeconfig, args.image, Path(tmp)) as cluster:
        client.CoreV1Api(cluster.api).create_namespaced_service_account(
            cluster.namespace, {"metadata": {"name": "ci-fixer-sandbox"}})
        # warm-up, untimed: imports, connection pool, image pull on a real cluster
        warm = sandboxes(cluster, 1)
        warm[0].init()
        client_pod_start(cluster, "warm-raw")
        clean(cluster, warm, ["warm-raw"])
        idle = Phase("idle", sockets=open_sockets(), threads=threading.active_count())

        sequential = Phase("sequential init()")
        started = sandboxes(cluster, n)
        with sequential.measured():
            for sandbox in started:
                sandbox.init()
        clean(cluster, started, [])

        concurrent = Phase(f"concurrent init(), {n} threads")
        started = sandboxes(cluster, n)
        with concurrent.measured():
            at_once(KubernetesSandbox.init, started)
        clean(cluster, started, [])

        raw = Phase(f"raw client, {n} threads, a watch each")
        names = [f"raw-{i}" for i in range(n)]
        with raw.measured():
            at_once(lambda name: client_pod_start(cluster, name), names)
        clean(cluster, [], names)
        print(f"# {cluster.description}; {n} sandboxes per phase; client idle: "
              f"{idle.sockets} sockets, {idle.threads} threads")
    print(f"{'phase':40} {'all Running s':>13} {'ratio':>6} {'peak sockets':>12} "
          f"{'peak threads':>12}")
    for phase in (sequential, concurrent, raw):
        print(f"{phase.name:40} {phase.seconds:13.2f} "
              f"{phase.seconds / sequential.seconds:5.2f}x {phase.sockets:12d} "
              f"{phase.threads:12d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
