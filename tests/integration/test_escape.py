"""The devcluster's pods contain their code: an escape suite, run as an attacker would.

tests/integration/escape_attempts.py runs inside a sandbox and tries, step by step, what
got out of earlier versions: file handles on the root inode, the devcluster's keys by any
path (``/proc/*/root``, ``/proc/*/cwd``, ``/proc/self/mountinfo`` hints), ``/etc/shadow``,
the host's ``/root``, writing outside its own directories, ``mknod``, ``mount``, a new user
namespace (``unshare -r``), killing and tracing host processes, and ``kubectl`` with any
credential it finds. Every step must fail, for code run through ``run_command`` (an exec)
and as a pod's own command, on a devcluster run by the test's user and, when that is root,
on one run by an unprivileged user.

This attacks the devcluster's own confinement, so it needs the devcluster: against a real
cluster (SANDBOXKIT_TEST_KUBECONFIG) the container runtime confines pods and these tests
are skipped. A machine without bubblewrap or user namespaces cannot confine pods at all:
there the tests fail, since that devcluster is not safe for untrusted code.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from escape_support import NOBODY, unprivileged_devcluster
from kubernetes import client, config, watch

from sandboxkit import create_sandbox
from sandboxkit.manifests import RESTRICTED_UID

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("SANDBOXKIT_TEST_KUBECONFIG")),
    reason="attacks the devcluster's own pod confinement; a real cluster's runtime differs",
)

SCRIPT = (Path(__file__).with_name("escape_attempts.py")).read_text()
STEPS = ["identity", "capabilities", "file_handles", "secrets", "shadow", "host_home",
         "writes", "devices", "mounts", "user_namespaces", "signals", "tracing",
         "host_processes", "kubectl"]
CLUSTERS = ["as-test-user", "as-nobody"]
ENTRIES = ["exec", "pod"]
TIMEOUT = 120


def _server(kubeconfig: Path) -> str:
    return yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]


def _config(kubeconfig: Path, victim: int, marker: str) -> dict[str, Any]:
    directory = kubeconfig.parent
    secrets = [str(p) for p in directory.rglob("*") if p.is_file() and p.suffix in (
        ".key", ".pem", ".crt", ".json", ".log", "") and "node" not in p.parts]
    home_kube = Path.home() / ".kube" / "config"
    if home_kube.exists():
        secrets.append(str(home_kube))
    return {
        "secrets": secrets, "api_url": _server(kubeconfig), "host_pid": victim,
        "test_pid": os.getpid(), "marker": marker,
        "host_dirs": [str(directory), str(directory / "node")],
        "host_home_entries": [e for e in os.listdir("/root") if e not in (".", "..")]
        if os.access("/root", os.R_OK) else [],
    }


def _in_pod(api: Any, namespace: str, arguments: list[str]) -> str:
    """Run the script as a pod's own command; its stdout (the report) from the log."""
    core = client.CoreV1Api(api)
    name = "escape-" + uuid.uuid4().hex[:6]
    core.create_namespaced_pod(namespace, {
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                 "containers": [{"name": "main", "image": "busybox",
                                 "command": ["python3", "-c", SCRIPT, *arguments]}]},
    })
    stream = watch.Watch().stream(core.list_namespaced_pod, namespace,
                                  field_selector=f"metadata.name={name}",
                                  timeout_seconds=TIMEOUT)
    for event in stream:
        if event["object"].status.phase in ("Succeeded", "Failed"):
            break
    return core.read_namespaced_pod_log(name, namespace)


def _attack(kubeconfig: Path, entry: str, victim_uid: int | None) -> dict[str, Any]:
    """Start a victim host process, run the script, check the host afterwards."""
    marker = "escaped-" + uuid.uuid4().hex[:8]
    victim = subprocess.Popen(
        ["sleep", "600"] if victim_uid is None else
        ["setpriv", f"--reuid={victim_uid}", f"--regid={victim_uid}", "--clear-groups",
         "--", "sleep", "600"])
    api = config.new_client_from_config(config_file=str(kubeconfig))
    core = client.CoreV1Api(api)
    namespace = "escape-" + uuid.uuid4().hex[:6]
    core.create_namespace({"metadata": {"name": namespace}})
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "ci-fixer-sandbox"}})
    try:
        argument = json.dumps(_config(kubeconfig, victim.pid, marker))
        if entry == "exec":
            with create_sandbox(image="busybox", kubeconfig=str(kubeconfig),
                                namespace=namespace, cpu_request="10m",
                                memory_request="16Mi") as sandbox:
                result = sandbox.run_command(f"python3 - {shlex.quote(argument)}",
                                             stdin=SCRIPT, timeout=TIMEOUT)
            assert result.exit_code == 0, result.stderr
            output = result.stdout
        else:
            output = _in_pod(api, namespace, [argument])
        report = json.loads(output.strip().splitlines()[-1])
        report["targets"] = len(json.loads(argument)["secrets"])
        report["host"] = {
            "victim_alive": victim.poll() is None,
            "planted": [str(d / marker) for d in map(Path, ["/", "/usr", "/etc", "/var", "/tmp",
                        "/root", str(kubeconfig.parent), str(Path.home())])
                        if (d / marker).exists()],
            "bindings": [b.metadata.name for b in client.RbacAuthorizationV1Api(api)
                         .list_cluster_role_binding().items if b.metadata.name == marker],
        }
        return report
    finally:
        victim.kill()
        victim.wait()
        core.delete_namespace(namespace)
        api.close()


@contextlib.contextmanager
def _cluster(request: pytest.FixtureRequest, who: str) -> Iterator[Path]:
    """The session's devcluster, or one run by nobody (only meaningful when we are root)."""
    if who == "as-test-user":
        yield request.getfixturevalue("kubeconfig")
        return
    if os.geteuid() != 0:
        pytest.skip("the tests already run as an unprivileged user: as-test-user covers it")
    with unprivileged_devcluster(NOBODY) as kubeconfig:
        yield kubeconfig


@pytest.fixture(scope="module", params=[(c, e) for c in CLUSTERS for e in ENTRIES],
                ids=lambda p: f"{p[0]}-{p[1]}")
def report(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    who, entry = request.param
    with _cluster(request, who) as kubeconfig:
        yield _attack(kubeconfig, entry, None if who == "as-test-user" else NOBODY)


@pytest.mark.parametrize("step", STEPS)
def test_every_escape_step_fails(report: dict[str, Any], step: str) -> None:
    outcome = report[step]
    assert report["targets"] >= 3, "no devcluster secrets to look for: the suite proves nothing"
    assert not outcome["crashed"], f"the attempt could not run: {outcome['detail']}"
    assert not outcome["escaped"], outcome["detail"]


def test_the_host_is_untouched(report: dict[str, Any]) -> None:
    host = report["host"]
    assert host["victim_alive"], "a pod killed a host process"
    assert host["planted"] == [], "a pod created files on the host"
    assert host["bindings"] == [], "a pod bound itself to cluster-admin"


@pytest.mark.parametrize("who", CLUSTERS)
def test_run_as_user_holds_inside_the_mapping(request: pytest.FixtureRequest, who: str) -> None:
    """The restricted profile's runAsUser/runAsGroup is what commands run as, and that
    uid can write its own directories, on either devcluster."""
    with _cluster(request, who) as kubeconfig:
        api = config.new_client_from_config(config_file=str(kubeconfig))
        core = client.CoreV1Api(api)
        namespace = "escape-" + uuid.uuid4().hex[:6]
        core.create_namespace({"metadata": {"name": namespace}})
        core.create_namespaced_service_account(
            namespace, {"metadata": {"name": "ci-fixer-sandbox"}})
        try:
            with create_sandbox(image="busybox", kubeconfig=str(kubeconfig), namespace=namespace,
                                security_profile="restricted", cpu_request="10m",
                                memory_request="16Mi") as sandbox:
                result = sandbox.run_command("id -u; id -g; echo ok > /tmp/mine && cat /tmp/mine")
        finally:
            core.delete_namespace(namespace)
            api.close()
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == [str(RESTRICTED_UID), str(RESTRICTED_UID), "ok"]
