"""How fast a sandbox starts and runs a command, through the official client and kubectl.

Run: ``.venv/bin/python bench/devcluster_bench.py [--pods N] [--execs N]``. Without
``KUBECONFIG`` (or ``--kubeconfig``) it starts its own devcluster for the run; with one it
measures that cluster, in a namespace it creates and deletes.

Each operation is timed twice in the same run, alternating: once through the official
``kubernetes`` client -- what sandboxkit does -- and once with kubectl, the baseline every
user already has. The ratio client/kubectl is what to compare across machines and
commits; absolute figures depend on the machine. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch
from kubernetes.stream import stream

TIMEOUT = 120  # seconds; a real cluster may have to pull the image first
IDLE = ["tail", "-f", "/dev/null"]


def job_manifest(name: str, image: str) -> dict[str, Any]:
    """A sandbox-shaped Job (one idle container, no retries) that stops fast."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"app": "sandboxkit-bench"}},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"app": "sandboxkit-bench"}},
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 1,
                    "automountServiceAccountToken": False,
                    "containers": [{"name": "main", "image": image, "command": IDLE}],
                },
            },
        },
    }


@dataclass
class Cluster:
    """Where to send requests: an API client and the kubectl command line that matches."""

    api: client.ApiClient
    kubectl_argv: list[str]
    namespace: str
    image: str
    description: str

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run kubectl in the bench namespace; raise with its stderr if it fails."""
        result = subprocess.run(
            [*self.kubectl_argv, "-n", self.namespace, *args], input=stdin,
            capture_output=True, text=True, timeout=TIMEOUT, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result


def timed(operation: Callable[[], object]) -> float:
    """Wall-clock seconds ``operation`` takes."""
    start = time.perf_counter()
    operation()
    return time.perf_counter() - start


# -- pod start: Job creation to a Running pod ------------------------------------------------

def client_pod_start(cluster: Cluster, name: str) -> None:
    """Create the Job, then watch its pods from the creation's resourceVersion until one
    runs: one POST and one watch, what sandboxkit's ``init()`` does."""
    batch = client.BatchV1Api(cluster.api)
    core = client.CoreV1Api(cluster.api)
    # the client serializes plain dicts as they are; its annotations only name the models
    body: Any = job_manifest(name, cluster.image)
    created: Any = batch.create_namespaced_job(cluster.namespace, body)
    events = watch.Watch().stream(
        core.list_namespaced_pod, cluster.namespace, label_selector=f"job-name={name}",
        resource_version=created.metadata.resource_version, timeout_seconds=TIMEOUT,
    )
    for event in events:
        if event["type"] == "ERROR":
            raise RuntimeError(f"watch failed: {event['raw_object']}")
        if event["object"].status.phase == "Running":
            events.close()
            return
    raise RuntimeError(f"job {name}: no Running pod within {TIMEOUT}s")


class KubectlPodStart:
    """``kubectl create -f job.yaml`` then ``kubectl wait --for=condition=Ready pod -l``.

    ``kubectl wait`` with a selector fails at once with "no matching resources found" if
    the Job controller has not made the pod yet; a script would run it again, so this
    does, counts the retries, and includes them in the time.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.retries = 0

    def __call__(self, cluster: Cluster, name: str) -> None:
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(job_manifest(name, cluster.image)))
        cluster.kubectl("create", "-f", str(path))
        while True:
            try:
                cluster.kubectl("wait", "--for=condition=Ready", "pod", "-l",
                                f"job-name={name}", f"--timeout={TIMEOUT}s")
                return
            except RuntimeError as exc:
                if "no matching resources found" not in str(exc):
                    raise
                self.retries += 1


# -- exec: `true` in a running pod -----------------------------------------------------------

def client_exec(cluster: Cluster, pod: str) -> None:
    """``true`` over the exec subresource (WebSocket), read to its exit status."""
    core = client.CoreV1Api(cluster.api)
    resp = stream(
        core.connect_get_namespaced_pod_exec, pod, cluster.namespace, command=["true"],
        stdin=False, stdout=True, stderr=True, tty=False, _preload_content=False,
    )
    resp.run_forever(timeout=TIMEOUT)
    if resp.returncode != 0:
        raise RuntimeError(f"exec true in {pod}: exit code {resp.returncode}")


def kubectl_exec(cluster: Cluster, pod: str) -> None:
    cluster.kubectl("exec", pod, "--", "true")


# -- the floor: one GET ------------------------------------------------------------------------

def client_get(cluster: Cluster) -> None:
    client.CoreV1Api(cluster.api).read_namespace(cluster.namespace)


def kubectl_get(cluster: Cluster) -> None:
    cluster.kubectl("get", "namespace", cluster.namespace, "-o", "name")


# -- running it ------------------------------------------------------------------------------

@dataclass
class Row:
    """One operation's samples, client and kubectl."""

    operation: str
    client: list[float]
    kubectl: list[float]

    def cells(self) -> list[str]:
        c, k = statistics.median(self.client), statistics.median(self.kubectl)
        return [self.operation, str(len(self.client)), f"{c * 1000:.1f}", f"{k * 1000:.1f}",
                f"{c / k:.2f}"]


def measure(cluster: Cluster, pods: int, execs: int, workdir: Path) -> tuple[list[Row], int]:
    """Alternate client and kubectl samples so drift (caches, load) hits both alike."""
    kubectl_start = KubectlPodStart(workdir)
    # Warm-up, untimed: image pull on a real cluster, kubectl's discovery cache, the
    # client's connection pool.
    client_pod_start(cluster, "warm-client")
    kubectl_start(cluster, "warm-kubectl")
    kubectl_start.retries = 0
    listing: Any = client.CoreV1Api(cluster.api).list_namespaced_pod(
        cluster.namespace, label_selector="job-name=warm-client")
    pod = str(listing.items[0].metadata.name)
    client_exec(cluster, pod)
    kubectl_exec(cluster, pod)

    start = Row("pod start: create Job -> Running", [], [])
    for i in range(pods):
        start.client.append(timed(partial(client_pod_start, cluster, f"c{i}")))
        start.kubectl.append(timed(partial(kubectl_start, cluster, f"k{i}")))
    run = Row("exec `true` round trip", [], [])
    get = Row("GET namespace (request floor)", [], [])
    for _ in range(execs):
        run.client.append(timed(partial(client_exec, cluster, pod)))
        run.kubectl.append(timed(partial(kubectl_exec, cluster, pod)))
        get.client.append(timed(partial(client_get, cluster)))
        get.kubectl.append(timed(partial(kubectl_get, cluster)))
    return [start, run, get], kubectl_start.retries


def render(rows: list[Row]) -> str:
    header = ["operation", "n", "client ms", "kubectl ms", "client/kubectl"]
    table = [header, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = []
    for n, line in enumerate(table):
        lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(line, widths, strict=True))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


@contextlib.contextmanager
def connect(kubeconfig: str | None, image: str, workdir: Path) -> Iterator[Cluster]:
    """The cluster to measure, in a fresh namespace deleted afterwards.

    Without a kubeconfig a devcluster is started for the run (and stopped with its pods).
    """
    with contextlib.ExitStack() as stack:
        if kubeconfig is None:
            from sandboxkit.devcluster import DevCluster

            devcluster = stack.enter_context(DevCluster())
            kubeconfig = str(devcluster.kubeconfig_path)
            description = f"devcluster at {devcluster.url} (started for this run)"
        else:
            description = f"cluster of {kubeconfig}"
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            raise SystemExit("kubectl not found on PATH: it is the baseline")
        # A private discovery cache, so earlier runs against other clusters do not count.
        argv = [kubectl, "--cache-dir", str(workdir / "cache")]
        if os.pathsep in kubeconfig:
            # a KUBECONFIG list: both tools merge it themselves, as kubectl users expect
            os.environ["KUBECONFIG"] = kubeconfig
            api = config.new_client_from_config()
        else:
            argv += ["--kubeconfig", kubeconfig]
            api = config.new_client_from_config(config_file=kubeconfig)
        stack.callback(api.close)
        core = client.CoreV1Api(api)
        namespace = f"sandboxkit-bench-{uuid.uuid4().hex[:6]}"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        stack.callback(core.delete_namespace, namespace, propagation_policy="Background")
        yield Cluster(api, argv, namespace, image, description)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=10, help="pod starts per tool (10)")
    parser.add_argument("--execs", type=int, default=30, help="execs per tool (30)")
    parser.add_argument("--image", default="busybox", help="container image (busybox)")
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"),
                        help="cluster to measure (default: $KUBECONFIG, else a devcluster)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sandboxkit-bench-") as tmp, \
            connect(args.kubeconfig, args.image, Path(tmp)) as cluster:
        version = client.VersionApi(cluster.api).get_code().git_version
        kubectl_version = subprocess.run(
            [*cluster.kubectl_argv, "version", "--client", "-o", "yaml"],
            capture_output=True, text=True, check=False,
        ).stdout
        kubectl_git = (yaml.safe_load(kubectl_version) or {}).get(
            "clientVersion", {}).get("gitVersion", "?")
        print(f"# {cluster.description}, server {version}; kubectl {kubectl_git}; "
              f"python {sys.version.split()[0]}; medians", flush=True)
        rows, retries = measure(cluster, args.pods, args.execs, Path(tmp))
    print(render(rows))
    if retries:
        print(f"# kubectl wait found no pod yet and was rerun {retries} time(s); "
              "included in its figure")
    return 0


if __name__ == "__main__":
    sys.exit(main())
