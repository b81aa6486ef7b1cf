"""The devcluster as a process: the ``sandboxkit devcluster`` CLI and ``DevCluster``.

These tests start their own servers, in their own directories, and check what a user of
the CLI or the context manager relies on: ``start`` prints what ``eval`` needs and is
idempotent (also when raced), ``status`` and ``stop`` find the server -- background or
foreground -- and nothing outlives ``stop``, the ``with`` block or a Ctrl-C: no server, no
pod process, no temporary directory. Processes are found by scanning ``/proc``, the way a
user would with ``ps``; readiness is awaited through the server's own output, kubectl and
watches, never by sleeping.

They test the devcluster itself, so they are skipped when the suite runs against another
cluster (``SANDBOXKIT_TEST_KUBECONFIG``).
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from workload_support import job_manifest, watch_until

from sandboxkit.devcluster import DevCluster
from sandboxkit.devcluster.process import running, start, stop

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("SANDBOXKIT_TEST_KUBECONFIG")),
    reason="tests the devcluster's own process management; SANDBOXKIT_TEST_KUBECONFIG "
    "points the suite at another cluster",
)

CLI_TIMEOUT = 120
IDLE_CMDLINE = b"tail\0-f\0/dev/null\0"
SERVER_MODULE = "sandboxkit.devcluster"


def _cli(*args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ``sandboxkit ARGS`` as a user would, in a separate interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "sandboxkit.cli", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def _kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args],
        capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False,
    )


def _cmdline(pid: int) -> bytes:
    """A process's argv, NUL-separated; empty for zombies and processes already gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _mentioning(text: str) -> list[str]:
    """Live processes whose command line contains ``text`` (pid and argv, for messages)."""
    needle = text.encode()
    found = []
    for pid in _pids():
        argv = _cmdline(pid)
        if needle in argv and pid != os.getpid():
            shown = argv.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{pid}: {shown}")
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs; a zombie waiting for its parent to reap it does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def _servers_for(directory: Path) -> list[int]:
    """Background server processes (``python -m sandboxkit.devcluster``) for ``directory``."""
    return [pid for pid in _pids()
            if SERVER_MODULE.encode() in (argv := _cmdline(pid))
            and f"--dir\0{directory}\0".encode() in argv]


def _container_pid(pod_name: str) -> int:
    """Host pid of the pod's ``tail -f /dev/null``: the idle command, with the pod's
    HOSTNAME in its environment (the kubelet sets it, as a real one does)."""
    marker = f"HOSTNAME={pod_name}".encode()
    matches = []
    for pid in _pids():
        if _cmdline(pid) != IDLE_CMDLINE:
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ:
            matches.append(pid)
    assert len(matches) == 1, f"pod {pod_name}: container processes {matches}"
    return matches[0]


def _run_idle_pod(kubeconfig: Path) -> tuple[str, int]:
    """Create a sandbox-shaped Job through the official client, watch its pod to Running,
    and return the pod's name and the host pid of its container."""
    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        name = f"idle-{uuid.uuid4().hex[:6]}"
        body: Any = job_manifest(name)  # a plain dict; the client sends it as it is
        client.BatchV1Api(api).create_namespaced_job("default", body)
        _, pod = watch_until(
            client.CoreV1Api(api).list_namespaced_pod,
            lambda _, p: p.status.phase == "Running",
            "default", label_selector=f"job-name={name}",
        )
    finally:
        api.close()
    pod_name = str(pod.metadata.name)
    return pod_name, _container_pid(pod_name)


def _reported_pid(text: str) -> int:
    match = re.search(r"\(pid (\d+)\)", text)
    assert match, text
    return int(match.group(1))


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Iterator[Path]:
    """A state directory whose server, if a test leaves one behind by failing, is stopped."""
    directory = tmp_path / "cluster"
    yield directory
    stop(directory)


@pytest.mark.kubectl
def test_start_status_stop(cluster_dir: Path) -> None:
    started = _cli("devcluster", "start", "--dir", str(cluster_dir))
    assert started.returncode == 0, started.stderr
    # stdout is exactly what `eval "$(sandboxkit devcluster start)"` needs
    assert started.stdout == f"export KUBECONFIG={cluster_dir}/kubeconfig\n"
    assert "started at https://127.0.0.1:" in started.stderr
    pid = _reported_pid(started.stderr)

    got = _kubectl(cluster_dir / "kubeconfig", "get", "ns", "default", "-o", "name")
    assert (got.returncode, got.stdout) == (0, "namespace/default\n"), got.stderr

    status = _cli("devcluster", "status", "--dir", str(cluster_dir))
    assert status.returncode == 0, status
    assert f"(pid {pid})" in status.stdout
    assert f"export KUBECONFIG={cluster_dir}/kubeconfig" in status.stdout

    again = _cli("devcluster", "start", "--dir", str(cluster_dir))
    assert again.returncode == 0, again.stderr
    assert again.stdout == started.stdout
    assert "already running" in again.stderr
    assert again.stderr.replace("already running", "started") == started.stderr
    assert _servers_for(cluster_dir) == [pid]

    stopped = _cli("devcluster", "stop", "--dir", str(cluster_dir))
    assert (stopped.returncode, stopped.stdout) == (0, f"devcluster in {cluster_dir} stopped\n")
    assert not _alive(pid)
    assert _mentioning(str(cluster_dir)) == []

    after = _cli("devcluster", "status", "--dir", str(cluster_dir))
    assert after.returncode == 1
    assert after.stdout == f"no devcluster is running in {cluster_dir}\n"


def test_concurrent_starts_share_one_server(cluster_dir: Path) -> None:
    """Two shells (or test workers) starting at once must not leave an orphaned server
    that ``stop`` cannot find."""
    starts = [
        subprocess.Popen(
            [sys.executable, "-m", "sandboxkit.cli", "devcluster", "start", "--dir",
             str(cluster_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=CLI_TIMEOUT) for p in starts]
    assert [p.returncode for p in starts] == [0, 0, 0], outputs
    assert {out for out, _ in outputs} == {f"export KUBECONFIG={cluster_dir}/kubeconfig\n"}
    pids = {_reported_pid(err) for _, err in outputs}
    assert len(pids) == 1, outputs
    assert sorted("started" in err for _, err in outputs) == [False, False, True]
    assert _servers_for(cluster_dir) == list(pids)

    assert stop(cluster_dir)
    assert _mentioning(str(cluster_dir)) == []


def test_context_manager_takes_pods_server_and_directory_with_it() -> None:
    with DevCluster() as cluster:
        directory = cluster.info.directory
        server = cluster.info.pid
        assert directory.name.startswith("sandboxkit-devcluster-")
        _, container = _run_idle_pod(cluster.kubeconfig_path)
        assert _alive(container)
    assert not _alive(container)
    assert not _alive(server)
    assert not directory.exists()
    assert _mentioning(str(directory)) == []


def test_context_manager_leaves_a_server_it_did_not_start(cluster_dir: Path) -> None:
    """Entering on a directory where ``sandboxkit devcluster start`` runs a server uses
    that server; leaving the block must not stop it under its owner."""
    started = _cli("devcluster", "start", "--dir", str(cluster_dir))
    assert started.returncode == 0, started.stderr
    pid = _reported_pid(started.stderr)
    with DevCluster(cluster_dir) as cluster:
        assert cluster.info.pid == pid
    assert _alive(pid)
    assert _cli("devcluster", "status", "--dir", str(cluster_dir)).returncode == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_foreground_run_stops_cleanly_on_signal(cluster_dir: Path, signum: int) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "sandboxkit.cli", "devcluster", "run", "--dir", str(cluster_dir)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert server.stdout is not None
        banner = []
        for line in server.stdout:
            banner.append(line)
            if "devcluster: serving" in line:
                break
        else:
            pytest.fail(f"the server exited before serving:\n{''.join(banner)}")
        assert f"export KUBECONFIG={cluster_dir}/kubeconfig" in banner[-1]

        # A foreground server is as visible to `status` as a background one. And once it
        # has answered a request it is past installing its signal handlers.
        status = _cli("devcluster", "status", "--dir", str(cluster_dir))
        assert status.returncode == 0, status
        assert f"(pid {server.pid})" in status.stdout
        _, container = _run_idle_pod(cluster_dir / "kubeconfig")

        server.send_signal(signum)
        rest, _ = server.communicate(timeout=CLI_TIMEOUT)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, rest
    assert rest.endswith("devcluster: stopped\n"), rest
    assert not _alive(container)
    assert _mentioning(str(cluster_dir)) == []
    assert _cli("devcluster", "status", "--dir", str(cluster_dir)).returncode == 1


def test_run_refuses_a_directory_whose_server_runs(cluster_dir: Path) -> None:
    started = _cli("devcluster", "start", "--dir", str(cluster_dir))
    assert started.returncode == 0, started.stderr
    second = _cli("devcluster", "run", "--dir", str(cluster_dir))
    assert second.returncode == 1
    assert "already runs" in second.stderr
    assert _servers_for(cluster_dir) == [_reported_pid(started.stderr)]


def test_bad_usage_exits_2_with_usage() -> None:
    bogus = _cli("devcluster", "bogus")
    assert bogus.returncode == 2
    assert bogus.stderr.startswith("usage: sandboxkit devcluster")
    assert "invalid choice: 'bogus'" in bogus.stderr
    missing = _cli("devcluster")
    assert missing.returncode == 2
    assert "usage: sandboxkit devcluster" in missing.stderr


def test_stop_and_status_without_a_server_say_so(cluster_dir: Path) -> None:
    stopped = _cli("devcluster", "stop", "--dir", str(cluster_dir))
    assert (stopped.returncode, stopped.stdout) == (
        0, f"no devcluster is running in {cluster_dir}\n")
    status = _cli("devcluster", "status", "--dir", str(cluster_dir))
    assert (status.returncode, status.stdout) == (
        1, f"no devcluster is running in {cluster_dir}\n")


def test_state_naming_a_recycled_pid_is_not_a_server(cluster_dir: Path) -> None:
    """A state file left by a server killed with SIGKILL may name a pid the kernel has
    since given to another process (here: this test's); that process is not the server."""
    cluster_dir.mkdir()
    (cluster_dir / "devcluster.json").write_text(
        f'{{"pid": {os.getpid()}, "url": "https://127.0.0.1:1", "start_time": 1}}')
    status = _cli("devcluster", "status", "--dir", str(cluster_dir))
    assert status.returncode == 1, status.stdout
    assert _cli("devcluster", "stop", "--dir", str(cluster_dir)).stdout.startswith("no ")


def test_killed_server_is_not_running_and_start_replaces_it(cluster_dir: Path) -> None:
    """SIGKILL leaves the state file behind, and (until its parent reaps it) a zombie with
    the server's pid and start time: neither may pass for a running server."""
    info, started = start(cluster_dir)
    assert started
    os.kill(info.pid, signal.SIGKILL)
    pidfd = os.pidfd_open(info.pid)
    try:
        assert select.select([pidfd], [], [], CLI_TIMEOUT)[0], "SIGKILL did not end the server"
    finally:
        os.close(pidfd)
    assert (cluster_dir / "devcluster.json").exists()
    assert running(cluster_dir) is None  # this process has not reaped its child yet

    assert _cli("devcluster", "status", "--dir", str(cluster_dir)).returncode == 1
    again = _cli("devcluster", "start", "--dir", str(cluster_dir))
    assert again.returncode == 0, again.stderr
    assert "started" in again.stderr
    assert _reported_pid(again.stderr) != info.pid


def _taken_port() -> tuple[socket.socket, int]:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder, int(holder.getsockname()[1])


@pytest.mark.parametrize("action", ["start", "run"])
def test_taken_port_is_a_message_not_a_hang_or_traceback(cluster_dir: Path, action: str) -> None:
    holder, port = _taken_port()
    with holder:
        result = _cli("devcluster", action, "--dir", str(cluster_dir), "--port", str(port))
    assert result.returncode == 1
    assert "Address already in use" in result.stderr
    if action == "start":
        assert "exited with status 1 while starting" in result.stderr
    else:
        assert result.stderr.startswith("error: ")
        assert "Traceback" not in result.stderr
    assert _mentioning(str(cluster_dir)) == []
