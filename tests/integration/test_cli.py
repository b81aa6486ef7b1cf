"""The ``sandboxkit`` command against a cluster: ``ls`` and ``gc`` in-process (``main``) and
as the installed console script, RBAC denials as one ``error:`` line, and the ``rbac``,
``doctor`` and ``diagnose`` commands over their library functions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from inventory_support import deadline_exceeded_sandbox, job_state, owner
from kubernetes import client
from sandbox_support import SERVICE_ACCOUNT, MakeSandbox
from workload_support import token_kubeconfig

from sandboxkit import KubernetesSandbox
from sandboxkit.cli import main
from sandboxkit.errors import ImagePullError
from sandboxkit.inventory import COLUMNS

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
SCRIPT = Path(sys.executable).with_name("sandboxkit")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def table(text: str) -> list[list[str]]:
    """kubectl-style output as rows of cells (no cell in these tests contains a space)."""
    return [line.split() for line in text.splitlines()]


@pytest.fixture
def sandbox(make_sandbox: MakeSandbox) -> KubernetesSandbox:
    return make_sandbox().init()


@pytest.fixture
def forbidden_kubeconfig(api_client: Any, namespace: str, tmp_path: Path) -> Path:
    """A kubeconfig for the test cluster authenticating as the sandbox's ServiceAccount,
    which may do nothing with the API (least privilege: the sandbox has no RBAC at all)."""
    return token_kubeconfig(api_client, namespace, SERVICE_ACCOUNT, tmp_path / "kubeconfig")


# --- ls -----------------------------------------------------------------------------------


def test_ls_shows_what_kubectl_shows(capsys: pytest.CaptureFixture[str], kubeconfig: Path,
                                     namespace: str, sandbox: KubernetesSandbox,
                                     kubectl: Kubectl) -> None:
    status, out, err = run(capsys, "ls", "-n", namespace, "--kubeconfig", str(kubeconfig))
    assert (status, err) == (0, "")
    header, *rows = table(out)
    assert header == ["NAME", "PHASE", "STATUS", "POD", "AGE"]
    assert [row[:4] for row in rows] == [[sandbox.name, "Active", "Running", sandbox.pod_name]]
    pod = kubectl("get", "pod", sandbox.pod_name, "-n", namespace, "--no-headers")
    assert pod.stdout.split()[2] == rows[0][2]  # kubectl's STATUS column, word for word

    status, out, _ = run(capsys, "--kubeconfig", str(kubeconfig), "ls", "-A", "-o", "wide")
    header, *rows = table(out)
    assert header[:2] == ["NAMESPACE", "NAME"] and header[-5:] == [
        "NODE", "IMAGE", "OWNER", "CPU", "MEMORY"]
    assert [namespace, sandbox.name] in [row[:2] for row in rows]


def test_ls_json_has_every_field(capsys: pytest.CaptureFixture[str], kubeconfig: Path,
                                 namespace: str, sandbox: KubernetesSandbox,
                                 api_client: Any) -> None:
    status, out, _ = run(capsys, "ls", "-n", namespace, "-o", "json",
                         "--kubeconfig", str(kubeconfig))
    assert status == 0
    [record] = json.loads(out)
    assert tuple(record) == COLUMNS
    job = client.BatchV1Api(api_client).read_namespaced_job(sandbox.name, namespace)
    assert pd.Timestamp(record["created"]) == pd.Timestamp(job.metadata.creation_timestamp)
    assert (record["name"], record["pod"]) == (sandbox.name, sandbox.pod_name)


def test_ls_in_an_empty_namespace_says_so(capsys: pytest.CaptureFixture[str],
                                          kubeconfig: Path, namespace: str) -> None:
    status, out, err = run(capsys, "ls", "-n", namespace, "--kubeconfig", str(kubeconfig))
    assert (status, out) == (0, "")
    assert err == f"No sandboxes found in {namespace} namespace.\n"


def test_a_forbidden_list_is_one_error_line_naming_the_permission(
        capsys: pytest.CaptureFixture[str], namespace: str,
        forbidden_kubeconfig: Path) -> None:
    status, out, err = run(capsys, "ls", "-n", namespace,
                           "--kubeconfig", str(forbidden_kubeconfig))
    assert (status, out) == (1, "")
    [line] = err.splitlines()
    assert line.startswith("error: ") and "may not list jobs.batch" in line
    assert f"serviceaccount:{namespace}:{SERVICE_ACCOUNT}" in line


# --- gc -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("make_sandbox")  # the ServiceAccount the Job's pod runs as
def test_gc_dry_run_then_for_real(capsys: pytest.CaptureFixture[str], kubeconfig: Path,
                                  namespace: str, api_client: Any) -> None:
    expired = deadline_exceeded_sandbox(api_client, namespace, owner(os.getpid()))
    flags = ["-n", namespace, "--kubeconfig", str(kubeconfig)]

    status, out, _ = run(capsys, "gc", "--dry-run", *flags)
    assert status == 0
    header, row = out.splitlines()
    assert header.split() == ["NAME", "REASON", "RESULT"]
    assert row.startswith(expired) and "DeadlineExceeded" in row
    assert row.endswith("would delete (dry run)")
    assert job_state(api_client, namespace, expired) == "present"

    status, out, _ = run(capsys, "gc", *flags)
    assert status == 0 and out.splitlines()[1].endswith("deleted")
    assert job_state(api_client, namespace, expired) in ("deleting", "gone")
    assert run(capsys, "gc", *flags)[1] == f"nothing to collect in namespace {namespace}\n"


# --- the console script -------------------------------------------------------------------


@pytest.fixture
def script() -> Path:
    if not SCRIPT.exists():
        pytest.skip(f"the console script is not installed next to {sys.executable}")
    return SCRIPT


def test_the_console_script_lists_sandboxes(script: Path, kubeconfig: Path, namespace: str,
                                            sandbox: KubernetesSandbox) -> None:
    done = subprocess.run([str(script), "ls", "-n", namespace], capture_output=True,
                          text=True, timeout=60, env={**os.environ,
                                                      "KUBECONFIG": str(kubeconfig)})
    assert done.returncode == 0, done.stderr
    assert [sandbox.name, "Active", "Running"] == table(done.stdout)[1][:3]


def test_the_console_script_reports_denial_without_a_traceback(
        script: Path, namespace: str, forbidden_kubeconfig: Path) -> None:
    done = subprocess.run([str(script), "gc", "-n", namespace], capture_output=True,
                          text=True, timeout=60,
                          env={**os.environ, "KUBECONFIG": str(forbidden_kubeconfig)})
    assert done.returncode == 1
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("error: ") and "may not list jobs.batch" in line


# --- rbac, doctor, diagnose ---------------------------------------------------------------


def test_rbac_apply_verify_uninstall(capsys: pytest.CaptureFixture[str], kubeconfig: Path,
                                     namespace: str) -> None:
    from sandboxkit.rbac import APP_SERVICE_ACCOUNT

    flags = ["-n", namespace, "--kubeconfig", str(kubeconfig)]
    app = ["--service-account", APP_SERVICE_ACCOUNT]
    status, out, _ = run(capsys, "rbac", "apply", *flags)
    assert status == 0 and out.strip()

    status, out, _ = run(capsys, "rbac", "verify", *flags, *app)
    assert status == 0, out
    assert "Role rules missing" not in out

    status, out, _ = run(capsys, "rbac", "uninstall", *flags)
    assert status == 0 and out.strip()
    status, out, _ = run(capsys, "rbac", "verify", *flags, *app)
    assert status == 1
    assert "Role rules missing" in out and "apiGroups" in out


def test_doctor_fails_until_the_rbac_is_installed(capsys: pytest.CaptureFixture[str],
                                                 kubeconfig: Path, namespace: str) -> None:
    flags = ["-n", namespace, "--kubeconfig", str(kubeconfig)]
    status, out, _ = run(capsys, "doctor", *flags)
    assert status == 1
    assert any(line.startswith("[ERROR]") and "RBAC" in line for line in out.splitlines())

    assert run(capsys, "rbac", "apply", *flags)[0] == 0
    status, out, _ = run(capsys, "doctor", *flags)
    assert status == 0, out
    assert "[ERROR]" not in out


def test_diagnose_a_sandbox_whose_image_cannot_be_pulled(
        capsys: pytest.CaptureFixture[str], kubeconfig: Path, namespace: str,
        make_sandbox: MakeSandbox) -> None:
    broken = make_sandbox(image="registry.invalid/nope:1", keep_on_failure=True)
    with pytest.raises(ImagePullError) as caught:
        broken.init()
    status, out, _ = run(capsys, "diagnose", broken.name, "-n", namespace,
                         "--kubeconfig", str(kubeconfig))
    assert status == 1
    errors = [line for line in out.splitlines() if line.startswith("[ERROR]")]
    assert any(broken.config.image in line for line in errors), out
    assert caught.value.image == broken.config.image


def test_diagnose_an_unknown_sandbox_fails(capsys: pytest.CaptureFixture[str],
                                          kubeconfig: Path, namespace: str) -> None:
    status, out, _ = run(capsys, "diagnose", "no-such-sandbox", "-n", namespace,
                         "--kubeconfig", str(kubeconfig))
    assert status == 1
    assert "[ERROR] sandbox no-such-sandbox does not exist" in out, out


# --- warm pools ---------------------------------------------------------------------------


def test_pool_start_ls_claim_and_drain_need_only_the_sandbox_role(
        script: Path, capsys: pytest.CaptureFixture[str], api_client: Any, kubeconfig: Path,
        namespace: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """As ci-fixer-app, bound to the Role k8s/rbac/k8s.yaml ships and nothing else: the
    console script fills the pool until SIGTERM, a claim from this process refills it, the
    idle sandbox stays after the stop, and drain deletes it."""
    from sandbox_support import IMAGE, SMALL
    from workload_support import watch_until

    from sandboxkit import create_sandbox, rbac
    from sandboxkit.backends.kubernetes.client import connect
    from sandboxkit.manifests import pool_selector
    from sandboxkit.pool import drain

    app = token_kubeconfig(api_client, namespace, "ci-fixer-app", tmp_path / "app")
    admin = connect(kubeconfig)
    rbac.apply(namespace, connection=admin)
    admin.close()
    batch = client.BatchV1Api(api_client)

    def ready_idle(exclude: str = "") -> str:
        _, job = watch_until(
            batch.list_namespaced_job,
            lambda _, j: bool(j.status and j.status.ready) and j.metadata.name != exclude
            and j.metadata.labels.get("sandboxkit.io/pool-state") == "idle",
            namespace, label_selector=pool_selector("warm"))
        return str(job.metadata.name)

    request.addfinalizer(lambda: drain("warm", namespace, connection=connect(kubeconfig)))
    filler = subprocess.Popen(
        [str(script), "pool", "start", "warm", "--size", "1", "-n", namespace,
         "--image", IMAGE, "--cpu-request", SMALL["cpu_request"],
         "--memory-request", SMALL["memory_request"]],
        env={**os.environ, "KUBECONFIG": str(app)}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = ready_idle()
        status, out, _ = run(capsys, "pool", "ls", "-n", namespace, "--kubeconfig", str(app))
        assert status == 0
        assert table(out) == [["NAME", "IDLE", "READY", "CLAIMED"], ["warm", "1", "1", "0"]]
        stages: list[str] = []
        sandbox = create_sandbox(pool="warm", kubeconfig=str(app), namespace=namespace,
                                 image=IMAGE, **SMALL)
        sandbox.init(on_progress=lambda stage, detail: stages.append(stage))
        assert (sandbox.name, stages[0]) == (first, "claimed")
        assert sandbox.run_command("echo claimed").stdout == "claimed\n"
        sandbox.teardown(wait=True)
        second = ready_idle(exclude=first)
    finally:
        filler.send_signal(signal.SIGTERM)
        out, err = filler.communicate(timeout=60)
    assert filler.returncode == 0, err
    assert "pool warm: 1 idle sandbox(es)" in out and "stopped; the idle sandboxes stay" in out
    status, out, _ = run(capsys, "pool", "drain", "warm", "-n", namespace,
                         "--kubeconfig", str(app))
    assert (status, out) == (0, f"deleted {second}\n")
    status, out, _ = run(capsys, "pool", "drain", "warm", "-n", namespace,
                         "--kubeconfig", str(app))
    assert out == f"pool warm has no idle sandboxes in namespace {namespace}\n"
