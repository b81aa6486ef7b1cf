"""Backends side by side: exec round trip and 64 MiB throughput, with the docker CLI as the
baseline for the Docker backend, all measured in one run.

    .venv/bin/python bench/backends_bench.py [--rounds 30] [--mib 64] [--kubeconfig PATH]

Docker: the engine ``DOCKER_HOST`` names, else a private ``dockerd`` started for the run (as
the tests do, tests/docker_support.py), with the busybox test image imported locally.
Kubernetes: ``--kubeconfig``/``$KUBECONFIG``, else a devcluster started for the run. Local:
plain processes. Rows, alternating the tools sample by sample so that drift hits all alike:

* ``true`` round trip (median): DockerSandbox.run_command vs ``docker exec C true``; the
  Kubernetes and local backends' run_command beside them;
* ``--mib`` MiB of stdout streamed to a callback (MiB/s, median of 3): DockerSandbox.stream
  vs ``docker exec C head -c N /dev/zero`` read from a pipe; Kubernetes and local beside.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sandboxkit import create_sandbox
from sandboxkit.backends.base import Sandbox

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from docker_support import build_image, docker_engine

MIB = 1 << 20
SMALL = {"cpu_request": "10m", "memory_request": "16Mi"}


@contextlib.contextmanager
def kubernetes_sandbox(kubeconfig: str | None) -> Iterator[Sandbox]:
    """A busybox sandbox in a fresh namespace of the given cluster or a devcluster."""
    from kubernetes import client, config

    with contextlib.ExitStack() as stack:
        chosen = kubeconfig or os.environ.get("KUBECONFIG")
        if not chosen:
            from sandboxkit.devcluster import DevCluster

            chosen = str(stack.enter_context(DevCluster()).kubeconfig_path)
        api = config.new_client_from_config(config_file=chosen)
        core = client.CoreV1Api(api)
        namespace = f"bench-{uuid.uuid4().hex[:8]}"
        core.create_namespace({"metadata": {"name": namespace}})
        stack.callback(core.delete_namespace, namespace)
        core.create_namespaced_service_account(namespace, {"metadata": {"name":
                                                                        "ci-fixer-sandbox"}})
        sandbox = create_sandbox(image="busybox", kubeconfig=chosen, namespace=namespace,
                                 **SMALL)
        with sandbox:
            yield sandbox


def median_ms(fn: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def mib_per_s(fn: Callable[[], int], mib: int) -> float:
    samples = []
    for _ in range(3):
        started = time.perf_counter()
        received = fn()
        assert received == mib * MIB, f"received {received} bytes, expected {mib} MiB"
        samples.append(mib / (time.perf_counter() - started))
    return statistics.median(samples)


def streamed(sandbox: Sandbox, mib: int) -> Callable[[], int]:
    def run() -> int:
        total = 0

        def count(chunk: bytes) -> None:
            nonlocal total
            total += len(chunk)

        sandbox.stream(f"head -c {mib * MIB} /dev/zero", on_stdout=count, on_stderr=None,
                       timeout=600)
        return total

    return run


def cli(argv: list[str]) -> Callable[[], int]:
    def run() -> int:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE)
        assert process.stdout is not None
        total = 0
        while chunk := process.stdout.read1(1 << 20):
            total += len(chunk)
        if process.wait() != 0:
            raise RuntimeError(f"{argv} exited with {process.returncode}")
        return total

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--kubeconfig")
    args = parser.parse_args()
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        sys.exit("the docker CLI (the baseline) is not on PATH")
    rows: list[tuple[str, float, str, float | None]] = []
    with contextlib.ExitStack() as stack:
        host = stack.enter_context(docker_engine())
        image = build_image(host)
        os.environ["DOCKER_HOST"] = host
        sandboxes: dict[str, Any] = {
            "docker": stack.enter_context(create_sandbox(execution_backend="docker",
                                                         image=image, **SMALL)),
            "local": stack.enter_context(create_sandbox(execution_backend="local")),
            "kubernetes": stack.enter_context(kubernetes_sandbox(args.kubeconfig)),
        }
        container = sandboxes["docker"].name
        for sandbox in sandboxes.values():  # warm-up: connections, caches
            sandbox.run_command("true")
        subprocess.run([docker_cli, "exec", container, "true"], check=True)

        baseline = median_ms(lambda: subprocess.run([docker_cli, "exec", container, "true"],
                                                     check=True), args.rounds)
        for backend, sandbox in sandboxes.items():
            ms = median_ms(lambda s=sandbox: s.run_command("true"), args.rounds)
            rows.append((f"`true` round trip ms: {backend}", ms, "docker exec CLI", baseline))
        baseline = mib_per_s(cli([docker_cli, "exec", container, "head", "-c",
                                  str(args.mib * MIB), "/dev/zero"]), args.mib)
        for backend, sandbox in sandboxes.items():
            rate = mib_per_s(streamed(sandbox, args.mib), args.mib)
            rows.append((f"{args.mib} MiB stdout MiB/s: {backend}", rate, "docker exec CLI",
                         baseline))
    print(f"{'measure':<36} {'value':>9}  {'baseline':<16} {'base':>9}  {'ratio':>6}")
    for name, value, base_name, base in rows:
        ratio = f"{value / base:6.2f}" if base else ""
        print(f"{name:<36} {value:9.1f}  {base_name:<16} {base or 0:9.1f}  {ratio}")


if __name__ == "__main__":
    main()
