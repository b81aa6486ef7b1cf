"""ensure_cluster() with no cluster configured: it starts a devcluster, points KUBECONFIG at
it, and the server goes away with the handle -- or with the process that started it, even
when that process is SIGKILLed (a notebook kernel killed by nbmake).

These start their own devclusters whatever cluster the suite runs against: that is what a
machine without a cluster gets.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cluster_support import no_cluster_env, wait_exit

from sandboxkit.backends.kubernetes.client import connect
from sandboxkit.devcluster.process import LOG_FILE, running
from sandboxkit.fallback import ClusterHandle, ensure_cluster

EXIT_TIMEOUT = 30.0


def test_fallback_starts_a_devcluster_and_close_stops_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in no_cluster_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    stale = str(tmp_path / "gone.yaml")  # names no file: not a configured cluster
    monkeypatch.setenv("KUBECONFIG", stale)
    directory = tmp_path / "devcluster"

    handle = ensure_cluster(directory=directory)
    try:
        _check_started(handle, directory)
    finally:
        handle.close()
    assert os.environ["KUBECONFIG"] == stale
    handle.close()


def _check_started(handle: ClusterHandle, directory: Path) -> None:
    info = running(directory)
    assert info is not None and handle.started
    assert handle.kubeconfig == info.kubeconfig_path
    assert os.environ["KUBECONFIG"] == str(info.kubeconfig_path)
    assert handle.description == f"devcluster at {info.url} (started here)"
    assert handle.isolation == info.isolation
    assert info.isolation.startswith("pods run unprivileged"), info.isolation

    conn = connect()  # what every later call sees
    try:
        names = {ns.metadata.name for ns in conn.core().list_namespace().items}
    finally:
        conn.close()
    assert "default" in names

    inner = ensure_cluster()  # now configured: used, not started again
    assert not inner.started and inner.kubeconfig == info.kubeconfig_path
    inner.close()
    assert running(directory) is not None

    handle.close()
    assert wait_exit(info.pid, EXIT_TIMEOUT), "devcluster still running after close()"
    assert running(directory) is None


_STARTER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from sandboxkit.fallback import ensure_cluster
    from sandboxkit.devcluster.process import running

    handle = ensure_cluster(directory=sys.argv[1])
    print(running(Path(sys.argv[1])).pid, flush=True)
    sys.stdin.read()  # until killed
""")


def test_devcluster_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    directory = tmp_path / "devcluster"
    starter = subprocess.Popen(
        [sys.executable, "-c", _STARTER, str(directory)], env=no_cluster_env(tmp_path),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert starter.stdout is not None
        server = int(starter.stdout.readline())
        assert running(directory) is not None
    finally:
        starter.send_signal(signal.SIGKILL)  # no handler, no atexit, no finally
        starter.wait(EXIT_TIMEOUT)
    assert wait_exit(server, EXIT_TIMEOUT), "devcluster outlived the process that started it"
    assert running(directory) is None
    log = (directory / LOG_FILE).read_text()
    assert f"process {starter.pid} that started it exited" in log
    assert "devcluster: stopped" in log  # the orderly shutdown that takes the pods along
