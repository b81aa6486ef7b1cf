"""``sandboxkit demo``, run as the README's first command runs it: the installed console
script, in a separate process, checked by what it prints and what it leaves behind.

On a machine without a cluster (no KUBECONFIG, HOME without ~/.kube/config) it must start
a devcluster and remove it again; on a configured cluster (the suite's) it must use that
one and leave an existing namespace in place, removing only what it added.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cluster_support import mentioning, no_cluster_env
from kubernetes import client

SCRIPT = Path(sys.executable).with_name("sandboxkit")
DEMO_TIMEOUT = 120
# The promise for a devcluster; a real cluster also pulls busybox on first use.
DEVCLUSTER_BUDGET = 60.0


def _demo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), "demo", *args], env=env, capture_output=True,
                          text=True, timeout=DEMO_TIMEOUT, check=False)


def _assert_commands_shown(out: str) -> None:
    """stdout, stderr and exit code of each command, as ci-fixer-app, and the diagnosis."""
    assert "stdout: hello from the sandbox" in out
    assert "stderr: this goes to stderr" in out
    assert "exit code: 0" in out and "exit code: 3" in out
    assert re.search(r"acting as system:serviceaccount:[\w-]+:ci-fixer-app", out)
    assert "may create Jobs: yes" in out and "may create pods directly: no" in out
    diagnosis = out[out.index("diagnose"):]
    assert "PROBLEMS FOUND" in diagnosis and "(ErrImagePull)" in diagnosis


def _total_seconds(out: str) -> float:
    match = re.search(r"demo finished in ([\d.]+)s; nothing left running", out)
    assert match, out
    return float(match.group(1))


def test_demo_on_a_machine_without_a_cluster(tmp_path: Path) -> None:
    env = no_cluster_env(tmp_path)
    done = _demo(env)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r"cluster\s+devcluster at https://127\.0\.0\.1:\d+ \(started here\)", out)
    assert re.search(r"\n\s+pods run unprivileged \(bubblewrap", out), "isolation not shown"
    assert "namespace sandboxkit-demo created" in out
    _assert_commands_shown(out)
    assert "namespace sandboxkit-demo deleted" in out
    assert "devcluster stopped" in out
    assert _total_seconds(out) < DEVCLUSTER_BUDGET
    # The devcluster lived in a temporary directory under TMPDIR: server and pods gone.
    assert not mentioning(env["TMPDIR"])
    assert not list(Path(env["TMPDIR"]).glob("sandboxkit-devcluster-*"))


def test_demo_in_an_existing_namespace_removes_only_what_it_added(
        kubeconfig: Path, namespace: str, api_client: client.ApiClient) -> None:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    done = _demo(env, "--namespace", namespace)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "started here" not in out
    assert f"{namespace} exists; it stays" in out
    _assert_commands_shown(out)
    assert 'rolebinding.rbac.authorization.k8s.io "ci-fixer-sandbox-binding" deleted' in out
    _total_seconds(out)

    assert client.CoreV1Api(api_client).read_namespace(namespace).status.phase == "Active"
    jobs = client.BatchV1Api(api_client).list_namespaced_job(
        namespace, label_selector="app=ci-fixer-sandbox").items
    assert not [job.metadata.name for job in jobs if not job.metadata.deletion_timestamp]
    roles = client.RbacAuthorizationV1Api(api_client).list_namespaced_role(namespace).items
    assert "ci-fixer-sandbox-manager" not in {role.metadata.name for role in roles}


def test_demo_failure_is_one_error_line_and_exit_1(tmp_path: Path) -> None:
    """An invalid namespace name fails at the namespace step, after the cluster step:
    the FAILED step is shown, the devcluster it started is still stopped."""
    done = _demo(no_cluster_env(tmp_path), "--namespace", "Not_A_Name")
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"namespace\s+FAILED: .*Not_A_Name", done.stdout)
    assert "devcluster stopped" in done.stdout
    assert done.stderr.startswith("error: ") and len(done.stderr.splitlines()) == 1
    assert not mentioning(str(tmp_path))


@pytest.fixture(autouse=True)
def _script_installed() -> None:
    assert SCRIPT.is_file(), f"{SCRIPT}: install the package (pip install -e '.[dev]')"
