"""KubernetesSandbox.init() against a raw create-and-watch script, in one run.

Target (issue: the sandbox library): ``init()`` to Running within 1.1x of the minimal
script that creates the same Job and watches its pod to Running with the official client.
Samples alternate between the two so load and caches affect both alike; the figure is the
ratio of medians.

    .venv/bin/python bench/sandbox_init_bench.py            # its own devcluster
    KUBECONFIG=~/.kube/config .venv/bin/python bench/sandbox_init_bench.py
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from devcluster_bench import Cluster, client_pod_start, connect, timed
from kubernetes import client

from sandboxkit import KubernetesSandbox


def sandbox_init(cluster: Any, sandboxes: list[KubernetesSandbox]) -> None:
    sandbox = KubernetesSandbox(
        image=cluster.image, namespace=cluster.namespace, api_client=cluster.api,
        cpu_request="10m", memory_request="16Mi",
    )
    sandbox.init()
    sandboxes.append(sandbox)


@contextlib.contextmanager
def sandbox_cluster(kubeconfig: str | None, image: str) -> Iterator[Cluster]:
    """:func:`devcluster_bench.connect`'s cluster and namespace, with the ServiceAccount
    sandbox pods run as."""
    with tempfile.TemporaryDirectory(prefix="sandboxkit-bench-") as tmp, \
            connect(kubeconfig, image, Path(tmp)) as cluster:
        client.CoreV1Api(cluster.api).create_namespaced_service_account(
            cluster.namespace, {"metadata": {"name": "ci-fixer-sandbox"}})
        yield cluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="starts per side (10)")
    parser.add_argument("--image", default="busybox")
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    args = parser.parse_args(argv)
    with sandbox_cluster(args.kubeconfig, args.image) as cluster:
        sandboxes: list[KubernetesSandbox] = []
        # warm-up, untimed: imports, connection pools, image pull on a real cluster
        client_pod_start(cluster, "warm-raw")
        sandbox_init(cluster, sandboxes)
        raw, ours = [], []
        for i in range(args.runs):
            raw.append(timed(partial(client_pod_start, cluster, f"raw-{i}")))
            ours.append(timed(partial(sandbox_init, cluster, sandboxes)))
        for sandbox in sandboxes:
            sandbox.teardown()
    print_ratio(f"# medians of {args.runs}; target: init() <= 1.1x the raw script",
                ("raw create+watch", raw), ("sandbox init()", ours))
    return 0


def print_ratio(header: str, baseline: tuple[str, list[float]],
                measured: tuple[str, list[float]]) -> None:
    """Two medians (samples in seconds) in ms, and the measured one's ratio to the baseline."""
    base_ms, ms = (statistics.median(samples) * 1000 for _, samples in (baseline, measured))
    print(header)
    print(f"{baseline[0]:<24} {base_ms:8.1f} ms")
    print(f"{measured[0]:<24} {ms:8.1f} ms   ratio {ms / base_ms:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
