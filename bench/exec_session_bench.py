"""Exec session benchmark: commands through a persistent session beside one exec each.

    .venv/bin/python bench/exec_session_bench.py [--kubeconfig PATH] [--rounds 100] [--mib 64]

The cluster is ``--kubeconfig``, else ``$KUBECONFIG``, else a devcluster started for the run;
a busybox pod idles in a fresh namespace (deleted at the end), as in exec_bench.py. Figures,
each beside its baselines measured in the same run and as a ratio:

* round trip of ``true`` (median, the contenders taking turns): a
  :class:`~sandboxkit.backends.session_pool.SessionPool` (what ``run_command`` uses
  with ``exec_session=True``) vs :func:`run_exec` (one exec per command, the
  ``exec_session=False`` path) vs a minimal ``kubernetes.stream.stream`` call vs
  ``kubectl exec``;
* throughput of ``--mib`` MiB of stdout (median of 5, taking turns): session vs one exec.

Targets (issue 12): session round trip <= 5 ms and <= 0.25x the raw stream call;
throughput no worse than one exec.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from exec_bench import MIB, bench_pod, interleaved_medians, kubectl_exec
from kubernetes import client
from kubernetes.stream import stream

from sandboxkit.backends.kubernetes.exec import DEFAULT_OUTPUT_LIMIT, run_exec
from sandboxkit.backends.kubernetes.sessions import session_pool
from sandboxkit.backends.session_pool import SessionPool
from sandboxkit.models import CommandResult


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--mib", type=int, default=64)
    options = parser.parse_args(args)

    with bench_pod(options.kubeconfig) as (api, kubeconfig, namespace, pod):
        core = client.CoreV1Api(api)
        kubectl = kubectl_exec(kubeconfig, namespace, pod)
        pool = session_pool(api, namespace, pod, None)
        contenders: dict[str, Callable[[], object]] = {
            "session (exec_session=True)": lambda: pool.run(
                ["true"], timeout=None, output_limit=DEFAULT_OUTPUT_LIMIT),
            "run_exec (exec_session=False)": lambda: run_exec(
                api, namespace, pod, None, ["true"]),
            "kubernetes.stream.stream()": lambda: stream(
                core.connect_get_namespaced_pod_exec, pod, namespace, command=["true"],
                stdout=True, stderr=True, stdin=False, tty=False),
        }
        if kubectl is not None:
            contenders["kubectl exec"] = lambda: kubectl(["true"])
        report_round_trip(interleaved_medians(contenders, options.rounds), options.rounds)
        report_throughput(options.mib, pool, api, namespace, pod)
        assert pool.supported, "the session fell back to one exec per command"
        pool.close()
    return 0


def report_round_trip(medians: dict[str, float], rounds: int) -> None:
    print(f"\nround trip of `true`, median of {rounds}")
    for name, value in medians.items():
        print(f"  {name:32s} {value:8.2f} ms")
    session = medians["session (exec_session=True)"]
    print(f"  {'session / stream()':32s} {session / medians['kubernetes.stream.stream()']:8.2f}x"
          "   (target <= 0.25x; and <= 5 ms)")
    print(f"  {'session / run_exec':32s} "
          f"{session / medians['run_exec (exec_session=False)']:8.2f}x")
    if "kubectl exec" in medians:
        print(f"  {'session / kubectl':32s} {session / medians['kubectl exec']:8.3f}x")


def report_throughput(mib: int, pool: SessionPool, api: Any, namespace: str,
                      pod: str) -> None:
    produce = ["head", "-c", str(mib * MIB), "/dev/zero"]

    def checked(result: CommandResult) -> None:
        assert result.exit_code == 0 and result.truncated, result

    runs: dict[str, Callable[[], object]] = {
        "session": lambda: checked(pool.run(produce, timeout=600,
                                            output_limit=DEFAULT_OUTPUT_LIMIT)),
        "run_exec": lambda: checked(run_exec(api, namespace, pod, None, produce,
                                             timeout=600)),
    }
    rounds = 5
    rates = {name: mib * MIB / (ms / 1000) / 1e6
             for name, ms in interleaved_medians(runs, rounds).items()}
    print(f"\n{mib} MiB of stdout, median of {rounds}, taking turns")
    for name, rate in rates.items():
        print(f"  {name:32s} {rate:8.1f} MB/s")
    print(f"  {'session / run_exec':32s} {rates['session'] / rates['run_exec']:8.2f}x"
          "   (target >= 1x)")


if __name__ == "__main__":
    sys.exit(main())
