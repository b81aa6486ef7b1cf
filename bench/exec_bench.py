"""Exec benchmarks: sandboxkit's exec client beside its baselines, measured in one run.

    .venv/bin/python bench/exec_bench.py [--kubeconfig PATH] [--rounds 50] [--mib 64]

The cluster is ``--kubeconfig``, else ``$KUBECONFIG``, else a devcluster started for the run.
A busybox pod idles in a fresh namespace (deleted at the end) and every client execs into
it. Figures, each printed beside its baselines and as a ratio:

* round trip of ``true`` (median): :func:`run_exec` vs a minimal ``kubernetes.stream.stream``
  call vs ``kubectl exec``;
* throughput of ``--mib`` MiB of stdout and peak Python memory (tracemalloc): run_exec vs
  ``kubectl exec`` vs the official WSClient (from ``--wsclient-mib``, default 8, doubling
  while a run takes under 8 s: its cost grows faster than its output);
* ``--gib`` GiB streamed to a callback: throughput and peak memory (target < 100 MB);
* a background child holding stdout (``sleep 30 & echo done``): run_exec vs kubectl.

Targets (issue 3): round trip <= 1.1x the raw stream call and >= 2x faster than kubectl;
throughput >= kubectl and >= 100x the WSClient; 1 GiB to a callback under 100 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.stream import stream

from sandboxkit.backends.kubernetes.exec import run_exec

MIB = 1 << 20
BENCH_LABEL = "sandboxkit-bench"


@contextlib.contextmanager
def cluster(kubeconfig: str | None) -> Iterator[Path]:
    """The kubeconfig to use: the one given, else $KUBECONFIG, else a fresh devcluster's."""
    chosen = kubeconfig or os.environ.get("KUBECONFIG")
    if chosen:
        yield Path(chosen)
        return
    from sandboxkit.devcluster import DevCluster

    with DevCluster() as dev:
        print(f"# devcluster at {dev.kubeconfig_path}")
        yield dev.kubeconfig_path


@contextlib.contextmanager
def idle_pod(api: client.ApiClient) -> Iterator[tuple[str, str]]:
    """A busybox pod running ``tail -f /dev/null`` in its own namespace, Running (by watch)."""
    core = client.CoreV1Api(api)
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(
        metadata=client.V1ObjectMeta(name=namespace, labels={BENCH_LABEL: "true"})))
    try:
        manifest: Any = {  # the client accepts plain dicts, as kubectl apply -f would
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "bench", "labels": {"app": "ci-fixer-sandbox"}},
            "spec": {
                "terminationGracePeriodSeconds": 1, "automountServiceAccountToken": False,
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox",
                                "command": ["tail", "-f", "/dev/null"]}],
            },
        }
        created: Any = core.create_namespaced_pod(namespace, manifest)
        for event in watch.Watch().stream(
                core.list_namespaced_pod, namespace, field_selector="metadata.name=bench",
                resource_version=created.metadata.resource_version, timeout_seconds=180):
            if event["object"].status.phase == "Running":
                break
        else:
            raise SystemExit("the benchmark pod did not start within 180 s")
        yield namespace, "bench"
    finally:
        core.delete_namespace(namespace, propagation_policy="Background")


def interleaved_medians(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Medians in ms, the contenders taking turns so drift hits them alike."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():  # warm up connections, caches and the pod's page cache
        fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) * 1000 for name, values in samples.items()}


def measured(fn: Callable[[], object]) -> tuple[float, int]:
    """(seconds, peak bytes traced by tracemalloc) for one call."""
    tracemalloc.start()
    try:
        started = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return elapsed, peak


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--wsclient-mib", type=int, default=8)
    parser.add_argument("--gib", type=float, default=1.0, help="0 skips the callback run")
    options = parser.parse_args(args)

    with bench_pod(options.kubeconfig) as (api, kubeconfig, namespace, pod):
        core = client.CoreV1Api(api)
        kubectl = kubectl_exec(kubeconfig, namespace, pod)

        def ours(argv: list[str], **kwargs: Any) -> Any:
            return run_exec(api, namespace, pod, None, argv, **kwargs)

        def raw_stream(argv: list[str]) -> Any:
            return stream(core.connect_get_namespaced_pod_exec, pod, namespace,
                          command=argv, stdout=True, stderr=True, stdin=False, tty=False)

        report_round_trip(options.rounds, ours, raw_stream, kubectl)
        report_throughput(options.mib, options.wsclient_mib, ours, kubectl, core, namespace,
                          pod)
        if options.gib > 0:
            report_callback(options.gib, ours)
        report_background_child(ours, kubectl)
    return 0


@contextlib.contextmanager
def bench_pod(kubeconfig: str | None) -> Iterator[tuple[client.ApiClient, Path, str, str]]:
    """(client, kubeconfig, namespace, pod): the idle pod every benchmark execs into, on
    the cluster :func:`cluster` picks; all of it gone at the end."""
    with cluster(kubeconfig) as path:
        api = config.new_client_from_config(config_file=str(path))
        try:
            with idle_pod(api) as (namespace, pod):
                yield api, path, namespace, pod
        finally:
            api.close()


def kubectl_exec(kubeconfig: Path, namespace: str,
                 pod: str) -> Callable[..., None] | None:
    """``kubectl(argv, timeout=120)`` running ``kubectl exec`` into the pod, output
    discarded; None when kubectl is not on PATH."""
    binary = shutil.which("kubectl")
    if binary is None:
        return None

    def kubectl(argv: list[str], timeout: float = 120) -> None:
        subprocess.run([binary, "--kubeconfig", str(kubeconfig), "exec", "-n", namespace,
                        pod, "--", *argv], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=timeout, check=False)

    return kubectl


def report_round_trip(rounds: int, ours: Callable[..., Any], raw: Callable[..., Any],
                      kubectl: Callable[..., Any] | None) -> None:
    contenders: dict[str, Callable[[], object]] = {
        "sandboxkit run_exec": lambda: ours(["true"]),
        "kubernetes.stream.stream()": lambda: raw(["true"]),
    }
    if kubectl is not None:
        contenders["kubectl exec"] = lambda: kubectl(["true"])
    medians = interleaved_medians(contenders, rounds)
    print(f"\nexec round trip of `true`, median of {rounds}")
    for name, value in medians.items():
        print(f"  {name:32s} {value:8.1f} ms")
    ratio = medians["sandboxkit run_exec"] / medians["kubernetes.stream.stream()"]
    print(f"  run_exec / stream()              {ratio:8.2f}x   (target <= 1.10x)")
    if kubectl is not None:
        speedup = medians["kubectl exec"] / medians["sandboxkit run_exec"]
        print(f"  kubectl / run_exec               {speedup:8.2f}x   (target >= 2x)")


def report_throughput(mib: int, wsclient_mib: int, ours: Callable[..., Any],
                      kubectl: Callable[..., Any] | None, core: client.CoreV1Api,
                      namespace: str, pod: str) -> None:
    produce = ["head", "-c", str(mib * MIB), "/dev/zero"]
    print(f"\n{mib} MiB of stdout (run_exec and kubectl: median of 3)")
    runs = [measured(lambda: ours(produce)) for _ in range(3)]
    ours_rate = mib * MIB / statistics.median(seconds for seconds, _ in runs) / 1e6
    peak = max(peak for _, peak in runs)
    print(f"  {'sandboxkit run_exec':32s} {ours_rate:8.1f} MB/s   peak {peak / 1e6:7.1f} MB"
          "   (result keeps the first 10 MiB)")
    kubectl_rate = float("nan")
    if kubectl is not None:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            kubectl(produce)
            times.append(time.perf_counter() - started)
        kubectl_rate = mib * MIB / statistics.median(times) / 1e6
        print(f"  {'kubectl exec':32s} {kubectl_rate:8.1f} MB/s")

    def wsclient(size: int) -> None:
        ws = stream(core.connect_get_namespaced_pod_exec, pod, namespace,
                    command=["head", "-c", str(size), "/dev/zero"],
                    stdout=True, stderr=True, stdin=False, tty=False,
                    _preload_content=False, binary=True)
        ws.run_forever(timeout=600)
        ws.read_stdout()
        ws.close()

    # The WSClient's cost grows faster than its output (it concatenates buffers), so it is
    # measured at doubling sizes while a run stays short, and compared at the largest.
    size_mib, ws_rate, ws_peak = wsclient_mib, float("nan"), 0
    while True:
        seconds, ws_peak = measured(functools.partial(wsclient, size_mib * MIB))
        ws_rate = size_mib * MIB / seconds / 1e6
        print(f"  {'official WSClient':32s} {ws_rate:8.1f} MB/s   peak {ws_peak / 1e6:7.1f} MB"
              f"   ({size_mib} MiB)")
        if size_mib >= mib or seconds > 8:
            break
        size_mib = min(size_mib * 2, mib)
    if size_mib < mib:
        print(f"  (WSClient stopped at {size_mib} MiB; its peak, scaled linearly to {mib} MiB, "
              f"would be {ws_peak * mib / size_mib / 1e6:.0f} MB)")
    print(f"  run_exec / kubectl               {ours_rate / kubectl_rate:8.2f}x   (target >= 1x)")
    print(f"  run_exec / WSClient              {ours_rate / ws_rate:8.1f}x   (target >= 100x;"
          f" WSClient at {size_mib} MiB)")


def report_callback(gib: float, ours: Callable[..., Any]) -> None:
    size = int(gib * 1024) * MIB
    received = 0

    def count(data: bytes) -> None:
        nonlocal received
        received += len(data)

    seconds, peak = measured(lambda: ours(["head", "-c", str(size), "/dev/zero"],
                                          on_stdout=count))
    assert received == size, (received, size)
    print(f"\n{gib:g} GiB of stdout to a callback")
    print(f"  {'sandboxkit run_exec':32s} {size / seconds / 1e6:8.1f} MB/s   "
          f"peak {peak / 1e6:7.1f} MB   (target < 100 MB)")


def report_background_child(ours: Callable[..., Any],
                            kubectl: Callable[..., Any] | None) -> None:
    script = ["sh", "-c", "sleep 30 & echo done"]
    print("\nbackground child holding stdout (`sleep 30 & echo done`)")
    started = time.perf_counter()
    result = ours(script)
    assert result.stdout == "done\n", result
    print(f"  {'sandboxkit run_exec':32s} {time.perf_counter() - started:8.3f} s")
    if kubectl is not None:
        started = time.perf_counter()
        try:
            kubectl(script, timeout=40)
            print(f"  {'kubectl exec':32s} {time.perf_counter() - started:8.3f} s")
        except subprocess.TimeoutExpired:
            print(f"  {'kubectl exec':32s} > 40 s (gave up)")


if __name__ == "__main__":
    sys.exit(main())
