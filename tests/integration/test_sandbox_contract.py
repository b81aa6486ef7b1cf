"""The Sandbox contract, written once and run against every backend.

A new backend is one entry in ``BACKENDS`` (and a branch in ``make_sandbox`` if it needs
other settings); kubernetes, docker (marker ``docker``, a real engine) and local run here,
the first two both through persistent exec sessions and with one exec per command.
Nothing is mocked: commands really run, files really travel, and the Kubernetes tests read
back what the cluster holds. The Kubernetes-only tests (the Job's fields, every
typed startup failure) skip for other backends through the ``kubernetes_only`` fixture.

Every sandbox is torn down (and waited for) by the fixture that made it, and every test
namespace gets the ``ci-fixer-sandbox`` ServiceAccount the seed manifest names.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from docker_support import IMAGE as DOCKER_IMAGE
from kubernetes import client
from kubernetes.client.rest import ApiException
from sandbox_support import IMAGE, SERVICE_ACCOUNT, SMALL, STARTUP_TIMEOUT
from workload_support import token_kubeconfig

from sandboxkit import CommandResult, KubernetesSandbox, attach_sandbox, create_sandbox
from sandboxkit.backends.base import Sandbox
from sandboxkit.errors import (
    CommandFailed,
    CommandTimeout,
    ConfigError,
    ImagePullError,
    PermissionDenied,
    QuotaExceeded,
    SandboxError,
    SandboxGone,
    SandboxNotFound,
    SandboxStartupError,
    ServiceAccountMissing,
    StartupTimeout,
    Unschedulable,
)
from sandboxkit.manifests import ID_LABEL, OWNER_ANNOTATION, sandbox_selector

# (backend, exec_session): the whole suite runs on Kubernetes and Docker both through
# persistent exec sessions (the default) and with one exec per command; local has no exec.
BACKENDS = [
    pytest.param(("kubernetes", True), id="kubernetes"),
    pytest.param(("kubernetes", False), id="kubernetes-one-exec"),
    pytest.param(("docker", True), id="docker", marks=pytest.mark.docker),
    pytest.param(("docker", False), id="docker-one-exec", marks=pytest.mark.docker),
    pytest.param(("local", True), id="local"),
]
# IMAGE, SERVICE_ACCOUNT, STARTUP_TIMEOUT and SMALL come from sandbox_support: small
# requests because torn-down pods hold theirs through the grace period, and the seed's
# 250m / 512Mi would let a dozen overlapping tests fill a node (devcluster or kind).
SEED_REQUESTS = {"cpu_request": "250m", "memory_request": "512Mi"}

MakeSandbox = Callable[..., Sandbox]


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def backend_mode(request: pytest.FixtureRequest) -> tuple[str, bool]:
    name, exec_session = request.param
    return str(name), bool(exec_session)


@pytest.fixture
def backend(backend_mode: tuple[str, bool]) -> str:
    return backend_mode[0]


@pytest.fixture
def kubernetes_only(backend: str) -> None:
    if backend != "kubernetes":
        pytest.skip("Kubernetes-specific behaviour")


@pytest.fixture
def sandbox_namespace(namespace: str, api_client: Any) -> str:
    """The test's namespace with the ServiceAccount sandboxes run as (k8s/rbac/k8s.yaml)."""
    client.CoreV1Api(api_client).create_namespaced_service_account(
        namespace, {"metadata": {"name": SERVICE_ACCOUNT}})
    return namespace


@pytest.fixture
def make_sandbox(backend_mode: tuple[str, bool],
                 request: pytest.FixtureRequest) -> Iterator[MakeSandbox]:
    """A factory of unstarted sandboxes, each torn down afterwards.

    Teardown does not wait (the pod's grace period runs on while the next test starts): a
    Job being deleted is cleaned up, and the session-end check ignores only those. Only the
    backend's own fixtures are set up (a cluster for kubernetes, an engine for docker).
    """
    backend, exec_session = backend_mode
    made: list[Sandbox] = []
    settings: dict[str, Any] = {"execution_backend": backend, "image": IMAGE,
                                "startup_timeout": STARTUP_TIMEOUT,
                                "exec_session": exec_session, **SMALL}
    if backend == "kubernetes":
        settings.update(kubeconfig=str(request.getfixturevalue("kubeconfig")),
                        namespace=request.getfixturevalue("sandbox_namespace"))
    elif backend == "docker":
        request.getfixturevalue("docker_host")
        settings.update(image=DOCKER_IMAGE)

    def make(**overrides: Any) -> Sandbox:
        sandbox = create_sandbox(**{**settings, **overrides})
        made.append(sandbox)
        return sandbox

    yield make
    for sandbox in made:
        sandbox.teardown()


@pytest.fixture
def sandbox(make_sandbox: MakeSandbox) -> Sandbox:
    return make_sandbox().init()


@pytest.fixture
def scratch(sandbox: Sandbox) -> str:
    """A writable directory inside the sandbox: /tmp in a container, the sandbox's own
    temporary directory for a local sandbox (whose /tmp is the host's)."""
    return sandbox.run_command('printf %s "${TMPDIR:-/tmp}"', check=True).stdout


def _eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Whether ``predicate`` comes true within ``timeout``: a log line written by a command
    reaches the runtime's log file asynchronously."""
    until = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > until:
            return False
        time.sleep(0.1)
    return True


def _sandbox_jobs(api_client: Any, namespace: str) -> list[Any]:
    """Sandbox Jobs in the namespace that are not already being deleted."""
    jobs = client.BatchV1Api(api_client).list_namespaced_job(
        namespace, label_selector=sandbox_selector()).items
    return [job for job in jobs if job.metadata.deletion_timestamp is None]


# --- lifecycle ----------------------------------------------------------------------------


def test_create_sandbox_dispatches_on_the_backend(make_sandbox: MakeSandbox,
                                                  backend: str) -> None:
    sandbox = make_sandbox()
    assert sandbox.config.execution_backend == backend
    if backend == "kubernetes":
        assert isinstance(sandbox, KubernetesSandbox)


def test_init_reaches_running_with_the_seed_job(
    make_sandbox: MakeSandbox, api_client: Any, sandbox_namespace: str, kubernetes_only: None,
) -> None:
    sandbox = make_sandbox(**SEED_REQUESTS)
    assert isinstance(sandbox, KubernetesSandbox)
    assert sandbox.pod_name is None
    assert sandbox.init() is sandbox
    assert sandbox.init() is sandbox  # idempotent
    assert sandbox.namespace == sandbox_namespace
    pod = client.CoreV1Api(api_client).read_namespaced_pod(sandbox.pod_name, sandbox_namespace)
    assert pod.status.phase == "Running"

    job = client.BatchV1Api(api_client).read_namespaced_job(sandbox.name, sandbox_namespace)
    assert job.metadata.uid == sandbox.job_uid
    assert job.metadata.labels["app"] == "ci-fixer-sandbox"
    assert job.metadata.labels[ID_LABEL] == sandbox.name
    assert f"pid={os.getpid()}" in job.metadata.annotations[OWNER_ANNOTATION]
    assert job.spec.backoff_limit == 0
    assert job.spec.ttl_seconds_after_finished == 300
    assert job.spec.active_deadline_seconds == sandbox.config.active_deadline_seconds
    spec = job.spec.template.spec
    assert spec.service_account_name == "ci-fixer-sandbox"
    assert spec.automount_service_account_token is False
    assert spec.restart_policy == "Never"
    assert spec.termination_grace_period_seconds == sandbox.config.termination_grace_period_seconds
    (container,) = spec.containers
    assert container.command == ["tail", "-f", "/dev/null"]
    assert container.image == IMAGE
    assert container.resources.limits == {"cpu": "1", "memory": "2Gi"}
    assert container.resources.requests == {"cpu": "250m", "memory": "512Mi"}
    assert pod.metadata.labels["app"] == "ci-fixer-sandbox"


def test_status_describes_the_running_sandbox(sandbox: Sandbox) -> None:
    status = sandbox.status()
    assert status.name == sandbox.name
    assert status.running, status
    assert status.job_phase == "Active"
    assert status.pod_phase == "Running" and status.container_state == "running"
    assert status.labels["app"] == "ci-fixer-sandbox"
    assert status.created
    assert any(event["reason"] == "Started" for event in status.events), status.events


def test_teardown_removes_job_and_pod_and_is_idempotent(
    make_sandbox: MakeSandbox, backend: str, request: pytest.FixtureRequest,
) -> None:
    sandbox = make_sandbox().init()
    started = time.monotonic()
    sandbox.teardown(wait=True)
    elapsed = time.monotonic() - started
    assert elapsed < 30, f"teardown(wait=True) took {elapsed:.1f}s"
    if backend == "kubernetes":
        api_client = request.getfixturevalue("api_client")
        sandbox_namespace = request.getfixturevalue("sandbox_namespace")
        with pytest.raises(ApiException) as caught:
            client.BatchV1Api(api_client).read_namespaced_job(sandbox.name, sandbox_namespace)
        assert caught.value.status == 404
        pods = client.CoreV1Api(api_client).list_namespaced_pod(
            sandbox_namespace, label_selector=sandbox_selector(sandbox.name)).items
        assert pods == []
    sandbox.teardown()  # idempotent
    sandbox.teardown(wait=True)
    assert sandbox.status().job_phase == "Missing"
    with pytest.raises(SandboxGone):
        sandbox.run_command("true")


def test_teardown_returns_without_waiting(make_sandbox: MakeSandbox) -> None:
    sandbox = make_sandbox().init()
    started = time.monotonic()
    sandbox.teardown()
    assert time.monotonic() - started < 5
    assert sandbox.status().job_phase in ("Deleting", "Missing")


def test_context_manager_starts_and_tears_down(make_sandbox: MakeSandbox) -> None:
    sandbox = make_sandbox()
    with pytest.raises(RuntimeError, match="boom"), sandbox as entered:
        assert entered is sandbox
        assert sandbox.run_command("echo in").stdout == "in\n"
        raise RuntimeError("boom")
    assert sandbox.status().job_phase in ("Deleting", "Missing")


def test_attach_takes_over_from_a_second_object(
    sandbox: Sandbox, kubeconfig: Path, sandbox_namespace: str, api_client: Any,
    kubernetes_only: None,
) -> None:
    assert isinstance(sandbox, KubernetesSandbox)
    sandbox.run_command("echo kept > /tmp/state")
    other = KubernetesSandbox.attach(sandbox.name, sandbox_namespace,
                                     kubeconfig=str(kubeconfig))
    assert other.pod_name == sandbox.pod_name and other.job_uid == sandbox.job_uid
    assert other.config.image == IMAGE
    assert other.run_command("cat /tmp/state").stdout == "kept\n"

    with pytest.raises(SandboxNotFound, match="no sandbox named"):
        KubernetesSandbox.attach("no-such-sandbox", sandbox_namespace,
                                 kubeconfig=str(kubeconfig))
    batch = client.BatchV1Api(api_client)
    batch.create_namespaced_job(sandbox_namespace, {
        "metadata": {"name": "not-a-sandbox"},
        "spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [
                {"name": "c", "image": IMAGE, "command": ["true"]}]}}},
    })
    try:
        with pytest.raises(SandboxNotFound, match="not a sandbox"):
            KubernetesSandbox.attach("not-a-sandbox", sandbox_namespace,
                                     kubeconfig=str(kubeconfig))
    finally:
        batch.delete_namespaced_job("not-a-sandbox", sandbox_namespace,
                                    propagation_policy="Background")
    other.teardown(wait=True)
    with pytest.raises(SandboxGone):
        sandbox.run_command("true")


def test_attach_sandbox_works_on_every_backend(sandbox: Sandbox) -> None:
    """The backend-neutral attach (what %sandbox_attach calls) finds the sandbox by name
    with the settings that made it, and a second object runs commands in the same place."""
    sandbox.run_command('echo kept > "${TMPDIR:-/tmp}/attach-state"', check=True)
    other = attach_sandbox(sandbox.name, sandbox.config)
    assert type(other) is type(sandbox) and other.name == sandbox.name
    assert other.run_command('cat "${TMPDIR:-/tmp}/attach-state"').stdout == "kept\n"
    with pytest.raises(SandboxNotFound):
        attach_sandbox("no-such-sandbox", sandbox.config)


def test_list_sandboxes_includes_a_running_one(sandbox: Sandbox) -> None:
    listed = {status.name: status for status in type(sandbox).list_sandboxes(sandbox.config)}
    assert sandbox.name in listed
    assert listed[sandbox.name].job_phase == "Active"
    assert listed[sandbox.name].created  # oldest first needs a creation time
    created = [status.created for status in listed.values()]
    assert created == sorted(created)


def test_logs_are_the_main_process_output_not_commands(sandbox: Sandbox, backend: str) -> None:
    """A container's log is what its PID 1 writes; a command reaches it only by writing to
    PID 1's stdout (as `kubectl logs` users do). A local sandbox has no main process."""
    sandbox.run_command("echo from-a-command")
    if backend == "local":
        assert sandbox.logs() == ""
    else:
        sandbox.run_command("echo first > /proc/1/fd/1; echo second > /proc/1/fd/1", check=True)
        assert "from-a-command" not in sandbox.logs()
        assert _eventually(lambda: sandbox.logs().splitlines()[-2:] == ["first", "second"])
        assert sandbox.logs(tail=1) == "second\n"
    assert sandbox.logs(tail=0) == ""
    with pytest.raises(ConfigError, match="tail"):
        sandbox.logs(tail=-1)


def test_logs_of_an_unstarted_sandbox_say_to_start_it(make_sandbox: MakeSandbox) -> None:
    with pytest.raises(SandboxError, match="not started"):
        make_sandbox().logs()


# --- commands -----------------------------------------------------------------------------


def test_stdout_and_stderr_stay_separate(sandbox: Sandbox) -> None:
    result = sandbox.run_command("echo out1; echo err1 >&2; echo out2; echo err2 >&2")
    assert isinstance(result, CommandResult)
    assert result.stdout == "out1\nout2\n"
    assert result.stderr == "err1\nerr2\n"
    assert result.stdout_bytes == b"out1\nout2\n"
    assert result.exit_code == 0 and result.ok and not result.truncated
    assert result.command == "echo out1; echo err1 >&2; echo out2; echo err2 >&2"
    assert result.duration > 0


@pytest.mark.parametrize(
    ("command", "exit_code"),
    [("true", 0), ("false", 1), ("no-such-command-sandboxkit", 127), ("kill -9 $$", 137),
     ("exit 42", 42)],
)
def test_exit_codes_are_reported_not_invented(
    sandbox: Sandbox, command: str, exit_code: int
) -> None:
    result = sandbox.run_command(command)
    assert result.exit_code == exit_code, result
    if exit_code == 127:
        assert "not found" in result.stderr


def test_check_raises_command_failed(sandbox: Sandbox) -> None:
    assert sandbox.run_command("true", check=True).exit_code == 0
    with pytest.raises(CommandFailed) as caught:
        sandbox.run_command("echo why >&2; exit 3", check=True)
    assert caught.value.result.exit_code == 3
    assert "why" in str(caught.value)


def test_env_and_workdir_arrive_verbatim(sandbox: Sandbox, scratch: str) -> None:
    tricky = "a b $(echo injected) `id` 'q' \"d\" ; $HOME \\"
    sandbox.run_command(f"mkdir -p '{scratch}/with space/-dash'", check=True)
    result = sandbox.run_command(
        'printf "%s|%s|%s" "$TRICKY" "$OTHER" "$(pwd)"',
        env={"TRICKY": tricky, "OTHER": ""}, workdir=f"{scratch}/with space/-dash")
    assert result.stdout == f"{tricky}||{scratch}/with space/-dash", result
    missing = sandbox.run_command("pwd", workdir="/no/such/dir")
    assert missing.exit_code != 0 and missing.stdout == ""


def test_config_env_and_workdir_apply_to_every_command(make_sandbox: MakeSandbox) -> None:
    sandbox = make_sandbox(env={"FROM_CONFIG": "yes"}, workdir="/tmp").init()
    assert sandbox.run_command('echo "$FROM_CONFIG $(pwd)"').stdout == "yes /tmp\n"
    overridden = sandbox.run_command('echo "$FROM_CONFIG"', env={"FROM_CONFIG": "call"})
    assert overridden.stdout == "call\n"


def test_stdin_is_sent_and_closed(sandbox: Sandbox) -> None:
    result = sandbox.run_command("cat; echo EOF-seen", stdin="line 1\nline 2\n", timeout=30)
    assert result.stdout == "line 1\nline 2\nEOF-seen\n"
    binary = bytes(range(256)) * 64
    counted = sandbox.run_command("wc -c", stdin=binary, timeout=30)
    assert counted.stdout.strip() == str(len(binary))
    empty = sandbox.run_command("cat; echo done", stdin=b"", timeout=30)
    assert empty.stdout == "done\n"


def test_binary_and_unicode_output_are_exact(sandbox: Sandbox) -> None:
    result = sandbox.run_command(r"printf '\000\001\377\376abc'")
    assert result.stdout_bytes == b"\x00\x01\xff\xfeabc"
    text = sandbox.run_command("i=0; while [ $i -lt 20000 ]; do printf 'é€'; i=$((i+1)); done")
    assert text.stdout == "é€" * 20000  # multi-byte characters across frame boundaries


def test_timeout_raises_and_kills_the_remote_process(sandbox: Sandbox, scratch: str) -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as caught:
        sandbox.run_command(f"echo $$ > {scratch}/victim; echo started; exec sleep 300",
                            timeout=1)
    assert time.monotonic() - started < 10
    assert caught.value.timeout == 1
    assert caught.value.result.stdout == "started\n"  # the output so far
    pid = sandbox.run_command(f"cat {scratch}/victim", check=True).stdout.strip()
    assert pid.isdigit()
    assert not _alive(sandbox, pid), f"process {pid} survived the timeout"


def test_interrupt_kills_the_remote_process(sandbox: Sandbox, scratch: str) -> None:
    def interrupt(_: bytes) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sandbox.stream(f"echo $$ > {scratch}/victim; echo go; exec sleep 300",
                       on_stdout=interrupt, on_stderr=None, timeout=60)
    pid = sandbox.run_command(f"cat {scratch}/victim", check=True).stdout.strip()
    assert not _alive(sandbox, pid), f"process {pid} survived the interrupt"


def _alive(sandbox: Sandbox, pid: str) -> bool:
    """Whether ``pid`` runs in the sandbox. A killed process whose parent is gone is
    reparented to the container's PID 1, which may be ``tail`` and never reap it: a zombie
    (``kill -0`` still succeeds on one) counts as dead."""
    assert pid.isdigit(), pid
    check = sandbox.run_command(f'test -d /proc/{pid} && ! grep -q "^State:.*Z" /proc/{pid}/status')
    return check.exit_code == 0


def test_background_child_does_not_hang_the_call(sandbox: Sandbox) -> None:
    started = time.monotonic()
    result = sandbox.run_command("sleep 30 & echo $! >&2; echo done", timeout=20)
    assert result.stdout == "done\n" and result.exit_code == 0
    assert time.monotonic() - started < 5
    # By pid, not `pkill sleep`: a local sandbox's processes share the host's process table.
    sandbox.run_command(f"kill {result.stderr.strip()}", check=True)


def test_commands_run_concurrently_from_threads(sandbox: Sandbox) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def run(i: int) -> CommandResult:
        return sandbox.run_command(f"sleep 0.2; echo {i}; echo e{i} >&2; exit {i % 3}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, range(16)))
    for i, result in enumerate(results):
        assert (result.stdout, result.stderr, result.exit_code) == (f"{i}\n", f"e{i}\n", i % 3)


def test_stream_delivers_everything_and_bounds_memory(make_sandbox: MakeSandbox) -> None:
    sandbox = make_sandbox(output_limit=1024).init()
    chunks: list[bytes] = []
    errors: list[bytes] = []
    size = 50 << 20
    started = time.monotonic()
    result = sandbox.stream(f"head -c {size} /dev/zero; echo tail >&2",
                            on_stdout=chunks.append, on_stderr=errors.append, timeout=120)
    elapsed = time.monotonic() - started
    assert sum(len(c) for c in chunks) == size
    assert b"".join(errors) == b"tail\n"
    assert result.exit_code == 0 and result.truncated
    assert len(result.stdout_bytes) == 1024
    assert elapsed < 60, f"50 MiB took {elapsed:.1f}s"


def test_pod_deleted_under_a_command_is_sandbox_gone(
    sandbox: Sandbox, api_client: Any, sandbox_namespace: str, kubernetes_only: None,
) -> None:
    assert isinstance(sandbox, KubernetesSandbox)
    core = client.CoreV1Api(api_client)

    def delete_pod(_: bytes) -> None:
        core.delete_namespaced_pod(sandbox.pod_name, sandbox_namespace)

    with pytest.raises(SandboxGone) as caught:
        sandbox.stream("echo started; sleep 60", on_stdout=delete_pod, on_stderr=None,
                       timeout=60)
    assert caught.value.reason in ("Deleting", "Deleted", "Error"), caught.value
    assert caught.value.result is not None and caught.value.result.stdout == "started\n"
    with pytest.raises(SandboxGone):
        sandbox.run_command("true")


def test_active_deadline_ends_the_sandbox_with_its_reason(
    make_sandbox: MakeSandbox, kubernetes_only: None,
) -> None:
    sandbox = make_sandbox(active_deadline_seconds=3).init()
    with pytest.raises(SandboxGone) as caught:
        sandbox.run_command("sleep 60", timeout=60)
    assert caught.value.reason == "DeadlineExceeded", caught.value
    assert "active_deadline_seconds=3" in str(caught.value)
    assert sandbox.status().job_phase == "Failed"


# --- files --------------------------------------------------------------------------------


def _tree(root: Path) -> Path:
    tree = root / "tree"
    (tree / "nested" / "deeper").mkdir(parents=True)
    (tree / "binary.bin").write_bytes(bytes(range(256)) * 40 + os.urandom(4096))
    script = tree / "run.sh"
    script.write_text("#!/bin/sh\necho ran-$1\n")
    script.chmod(0o755)
    private = tree / "nested" / "secret.txt"
    private.write_text("ünïcödé\n")
    private.chmod(0o600)
    (tree / "nested" / "deeper" / "empty").write_bytes(b"")
    (tree / "link").symlink_to("run.sh")
    return tree


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    found = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            content = os.readlink(path).encode()
        elif path.is_file():
            content = path.read_bytes()
        else:
            content = b""
        found[str(path.relative_to(root))] = (stat.S_IMODE(info.st_mode), content)
    return found


def test_upload_download_round_trip_of_a_tree(sandbox: Sandbox, tmp_path: Path,
                                               scratch: str) -> None:
    tree = _tree(tmp_path)
    sandbox.upload(tree, f"{scratch}/up/tree")
    ran = sandbox.run_command(
        f"{scratch}/up/tree/run.sh ok && stat -c %a {scratch}/up/tree/nested/secret.txt")
    assert ran.stdout == "ran-ok\n600\n", ran
    remote_sum = sandbox.run_command(f"md5sum {scratch}/up/tree/binary.bin", check=True)
    local_sum = hashlib.md5((tree / "binary.bin").read_bytes()).hexdigest()
    assert remote_sum.stdout.split()[0] == local_sum

    sandbox.download(f"{scratch}/up/tree", tmp_path / "back")
    assert _snapshot(tmp_path / "back") == _snapshot(tree)
    # Trailing slash: into the directory, under the source's own name.
    sandbox.upload(tree / "run.sh", f"{scratch}/into/")
    assert sandbox.run_command(f"test -x {scratch}/into/run.sh").exit_code == 0
    (tmp_path / "dest").mkdir()
    sandbox.download(f"{scratch}/into/run.sh", str(tmp_path / "dest") + "/")
    copied = tmp_path / "dest" / "run.sh"
    assert copied.read_text() == (tree / "run.sh").read_text()
    assert stat.S_IMODE(copied.stat().st_mode) == 0o755


def test_single_file_copies_are_binary_safe(sandbox: Sandbox, tmp_path: Path,
                                            scratch: str) -> None:
    payload = os.urandom(3 << 20)
    (tmp_path / "blob").write_bytes(payload)
    sandbox.upload(tmp_path / "blob", f"{scratch}/renamed.bin")
    assert sandbox.run_command(f"wc -c < {scratch}/renamed.bin").stdout.strip() == str(len(payload))
    sandbox.download(f"{scratch}/renamed.bin", tmp_path / "blob-back")
    assert (tmp_path / "blob-back").read_bytes() == payload


def test_missing_paths_are_clear_errors(sandbox: Sandbox, tmp_path: Path,
                                        scratch: str) -> None:
    with pytest.raises(FileNotFoundError) as local:
        sandbox.upload(tmp_path / "nope", f"{scratch}/x")
    assert str(tmp_path / "nope") in str(local.value)
    with pytest.raises(FileNotFoundError) as remote:
        sandbox.download(f"{scratch}/does/not/exist", tmp_path / "x")
    assert f"{scratch}/does/not/exist" in str(remote.value)
    assert not (tmp_path / "x").exists()


# --- typed startup failures (Kubernetes) --------------------------------------------------


def _assert_cleaned_up(api_client: Any, namespace: str) -> None:
    assert _sandbox_jobs(api_client, namespace) == [], "a failed init left its Job behind"


def test_bad_image_raises_image_pull_error(
    make_sandbox: MakeSandbox, api_client: Any, sandbox_namespace: str, kubernetes_only: None,
) -> None:
    image = "registry.invalid/sandboxkit/no-such-image:0.0.1"
    sandbox = make_sandbox(image=image)
    with pytest.raises(ImagePullError) as caught:
        sandbox.init()
    assert caught.value.image == image
    assert caught.value.reason in ("ErrImagePull", "ImagePullBackOff")
    assert caught.value.sandbox == sandbox.name
    assert image in str(caught.value)
    _assert_cleaned_up(api_client, sandbox_namespace)


def test_invalid_image_name(make_sandbox: MakeSandbox, api_client: Any, sandbox_namespace: str,
                            kubernetes_only: None) -> None:
    sandbox = make_sandbox(image="UPPER/Case:Image")
    with pytest.raises(ImagePullError) as caught:
        sandbox.init()
    assert caught.value.reason == "InvalidImageName"
    _assert_cleaned_up(api_client, sandbox_namespace)


def test_unschedulable_request(make_sandbox: MakeSandbox, api_client: Any,
                               sandbox_namespace: str, kubernetes_only: None) -> None:
    sandbox = make_sandbox(cpu_request="1000", cpu_limit="1000")
    with pytest.raises(Unschedulable) as caught:
        sandbox.init()
    assert "Insufficient cpu" in str(caught.value)
    _assert_cleaned_up(api_client, sandbox_namespace)


def test_quota_exceeded(make_sandbox: MakeSandbox, api_client: Any, sandbox_namespace: str,
                        kubernetes_only: None) -> None:
    client.CoreV1Api(api_client).create_namespaced_resource_quota(
        sandbox_namespace, {"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}})
    sandbox = make_sandbox()
    with pytest.raises(QuotaExceeded) as caught:
        sandbox.init()
    assert "exceeded quota: no-pods" in str(caught.value)
    _assert_cleaned_up(api_client, sandbox_namespace)


def test_missing_service_account(make_sandbox: MakeSandbox, api_client: Any,
                                 sandbox_namespace: str, kubernetes_only: None) -> None:
    sandbox = make_sandbox(service_account="no-such-account")
    with pytest.raises(ServiceAccountMissing) as caught:
        sandbox.init()
    message = str(caught.value)
    assert "no-such-account" in message and "k8s/rbac/k8s.yaml" in message
    _assert_cleaned_up(api_client, sandbox_namespace)


def test_permission_denied_names_verb_resource_and_identity(
    api_client: Any, sandbox_namespace: str, tmp_path: Path, kubernetes_only: None,
) -> None:
    kubeconfig = token_kubeconfig(api_client, sandbox_namespace, "no-rbac",
                                  tmp_path / "kubeconfig")
    sandbox = KubernetesSandbox(IMAGE, kubeconfig=str(kubeconfig))
    assert sandbox.namespace == sandbox_namespace  # from the kubeconfig context
    with pytest.raises(PermissionDenied) as caught:
        sandbox.init()
    denied = caught.value
    assert denied.verb == "create"
    assert denied.resource == "jobs.batch"
    assert denied.namespace == sandbox_namespace
    assert denied.identity == f"system:serviceaccount:{sandbox_namespace}:no-rbac"
    assert "k8s/rbac/k8s.yaml" in str(denied)
    _assert_cleaned_up(api_client, sandbox_namespace)
    sandbox.teardown()  # nothing was created; still fine


def test_denied_watch_after_create_deletes_the_job(
    api_client: Any, sandbox_namespace: str, tmp_path: Path, kubernetes_only: None,
) -> None:
    """RBAC that lets the Job be created but not its pod watched: init() fails with the
    missing verb and still deletes the Job it made."""
    kubeconfig = token_kubeconfig(api_client, sandbox_namespace, "jobs-only",
                                  tmp_path / "kubeconfig")
    rbac = client.RbacAuthorizationV1Api(api_client)
    rbac.create_namespaced_role(sandbox_namespace, {
        "metadata": {"name": "jobs-only"},
        "rules": [{"apiGroups": ["batch"], "resources": ["jobs"],
                   "verbs": ["create", "get", "delete"]}],
    })
    rbac.create_namespaced_role_binding(sandbox_namespace, {
        "metadata": {"name": "jobs-only"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "jobs-only"},
        "subjects": [{"kind": "ServiceAccount", "name": "jobs-only",
                      "namespace": sandbox_namespace}],
    })
    sandbox = KubernetesSandbox(IMAGE, kubeconfig=str(kubeconfig))
    with pytest.raises(PermissionDenied) as caught:
        sandbox.init()
    assert caught.value.resource == "pods"
    assert caught.value.verb in ("list", "watch")
    _assert_cleaned_up(api_client, sandbox_namespace)


def test_startup_timeout_cleans_up(make_sandbox: MakeSandbox, api_client: Any,
                                   sandbox_namespace: str, kubernetes_only: None) -> None:
    sandbox = make_sandbox(startup_timeout=0.001)
    with pytest.raises(StartupTimeout) as caught:
        sandbox.init()
    assert sandbox.name in str(caught.value)
    _assert_cleaned_up(api_client, sandbox_namespace)


def test_keep_on_failure_leaves_the_job_for_debugging(
    make_sandbox: MakeSandbox, api_client: Any, sandbox_namespace: str, kubernetes_only: None,
) -> None:
    sandbox = make_sandbox(image="registry.invalid/nope:1", keep_on_failure=True)
    with pytest.raises(SandboxStartupError) as caught:
        sandbox.init()
    assert any("kubectl describe job" in note for note in caught.value.__notes__)
    (job,) = _sandbox_jobs(api_client, sandbox_namespace)
    assert job.metadata.name == sandbox.name
    assert sandbox.status().container_state == "waiting"
    sandbox.teardown(wait=True)
    _assert_cleaned_up(api_client, sandbox_namespace)
