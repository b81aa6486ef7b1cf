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
import os
import statistics
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from devcluster_bench import client_pod_start, connect, timed
from kubernetes import client

from sandboxkit import KubernetesSandbox


def sandbox_init(cluster: Any, sandboxes: list[KubernetesSandbox]) -> None:
    sandbox = KubernetesSandbox(
        image=cluster.image, namespace=cluster.namespace, api_client=cluster.api,
        cpu_request="10m", memory_request="16Mi",
    )
    sandbox.init()
    sandboxes.append(sandbox)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="starts per side (10)")
    parser.add_argument("--image", default="busybox")
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sandboxkit-bench-") as tmp, \
            connect(args.kubeconfig, args.image, Path(tmp)) as cluster:
        client.CoreV1Api(cluster.api).create_namespaced_service_account(
            cluster.namespace, {"metadata": {"name": "ci-fixer-sandbox"}})
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
    raw_ms, our_ms = statistics.median(raw) * 1000, statistics.median(ours) * 1000
    print(f"# medians of {args.runs}; target: init() <= 1.1x the raw script")
    print(f"raw create+watch   {raw_ms:8.1f} ms")
    print(f"sandbox init()     {our_ms:8.1f} ms   ratio {our_ms / raw_ms:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
