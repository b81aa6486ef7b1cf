"""A warm pool's claim against a cold start, in one run.

Target (issue 12): from ``claim()`` to the first command finished, median < 100 ms on the
devcluster and <= 0.2x a cold ``init()`` followed by the same command. Samples alternate
between the two so load and caches affect both alike; between samples the pool is filled
again and every sandbox used is deleted (both untimed), so each claim finds a full pool
and each sample starts from the same cluster state. The figure is the ratio of medians.

    .venv/bin/python bench/pool_bench.py            # its own devcluster
    KUBECONFIG=~/.kube/config .venv/bin/python bench/pool_bench.py --runs 20
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from sandbox_init_bench import print_ratio, sandbox_cluster

from sandboxkit import KubernetesSandbox
from sandboxkit.pool import SandboxPool

SMALL = {"cpu_request": "10m", "memory_request": "16Mi"}


def first_command(sandbox: KubernetesSandbox, start: float) -> float:
    """Seconds from ``start`` until ``true`` has run in the started ``sandbox``."""
    result = sandbox.run_command("true")
    elapsed = time.perf_counter() - start
    assert result.exit_code == 0, result
    sandbox.teardown(wait=True)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="samples per side (20)")
    parser.add_argument("--size", type=int, default=2, help="the pool's size (2)")
    parser.add_argument("--image", default="busybox")
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    args = parser.parse_args(argv)
    with sandbox_cluster(args.kubeconfig, args.image) as cluster:
        settings = {"image": cluster.image, "namespace": cluster.namespace, **SMALL}
        # No refill thread: fill() between samples, so every claim meets a full pool and
        # no background start competes with the cold sample for the machine.
        pool = SandboxPool("bench", args.size, api_client=cluster.api, **settings)
        stages: list[str] = []

        def claim() -> float:
            start = time.perf_counter()
            sandbox = pool.claim(on_progress=lambda stage, detail: stages.append(stage))
            return first_command(sandbox, start)

        def cold() -> float:
            start = time.perf_counter()
            sandbox = KubernetesSandbox(api_client=cluster.api, **settings).init()
            return first_command(sandbox, start)

        pool.fill()
        claim(), cold()  # warm-up, untimed: imports, connection pools, image pull
        warm_samples, cold_samples = [], []
        for _ in range(args.runs):
            pool.fill()
            warm_samples.append(claim())
            cold_samples.append(cold())
        pool.drain()
    print_ratio(f"# medians of {args.runs} on {cluster.description}; target: claim + first "
                "command < 100 ms and <= 0.2x cold",
                ("cold init() + command", cold_samples),
                ("pool claim() + command", warm_samples))
    print(f"claims that started cold: {stages.count('cold')} of {args.runs + 1}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
