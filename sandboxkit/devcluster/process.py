"""Run the devcluster as a background process and find it again.

The server runs in its own process (``python -m sandboxkit.devcluster run``) so that it
outlives a CLI call, never shares an event loop or signal handlers with a notebook kernel or
test runner, and takes its pod processes with it when it exits. A state file in the cluster
directory names the running server, which makes ``start`` idempotent and ``stop``/``status``
possible from any shell.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = [
    "DEFAULT_DIR",
    "ClusterInfo",
    "DevCluster",
    "DevClusterError",
    "running",
    "start",
    "stop",
    "write_state",
]

DEFAULT_DIR = Path.home() / ".sandboxkit" / "devcluster"
STATE_FILE = "devcluster.json"
LOG_FILE = "devcluster.log"


class DevClusterError(RuntimeError):
    """The devcluster could not be started or stopped; the message says what to do."""


@dataclass(frozen=True)
class ClusterInfo:
    directory: Path
    pid: int
    url: str

    @property
    def kubeconfig_path(self) -> Path:
        return self.directory / "kubeconfig"


def write_state(directory: Path, url: str) -> None:
    """Called by the server once it answers, so a state file always names a live server."""
    state = {"pid": os.getpid(), "url": url}
    tmp = directory / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state))
    tmp.replace(directory / STATE_FILE)


def _is_devcluster(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"sandboxkit.devcluster" in cmdline


def running(directory: Path = DEFAULT_DIR) -> ClusterInfo | None:
    """The server recorded in ``directory``, if it is still alive."""
    try:
        state = json.loads((Path(directory) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    pid = int(state.get("pid", 0))
    if pid <= 0 or not _is_devcluster(pid):
        return None
    return ClusterInfo(Path(directory), pid, str(state["url"]))


def _log_tail(directory: Path, lines: int = 20) -> str:
    try:
        return "\n".join((directory / LOG_FILE).read_text().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start(
    directory: Path = DEFAULT_DIR, port: int = 0, timeout: float = 60.0
) -> tuple[ClusterInfo, bool]:
    """Start a server in the background; returns it and whether it was started now.

    Blocks until the server reports it is serving, by reading a line from a pipe the child
    writes once ready -- no polling.
    """
    directory = Path(directory).expanduser().resolve()
    existing = running(directory)
    if existing is not None:
        return existing, False
    directory.mkdir(parents=True, exist_ok=True)
    read_fd, write_fd = os.pipe()
    try:
        with open(directory / LOG_FILE, "ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "sandboxkit.devcluster", "run", "--dir", str(directory),
                 "--port", str(port), "--ready-fd", str(write_fd)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(write_fd,), start_new_session=True,
            )
    finally:
        os.close(write_fd)
    try:
        line = _read_line(read_fd, timeout)
    finally:
        os.close(read_fd)
    if not line.startswith("ready "):
        if child.poll() is None:
            child.kill()
            child.wait()
        raise DevClusterError(
            f"the devcluster did not start within {timeout:.0f}s "
            f"(see {directory / LOG_FILE}):\n{_log_tail(directory)}"
        )
    return ClusterInfo(directory, child.pid, line.split(" ", 1)[1].strip()), True


def _read_line(fd: int, timeout: float) -> str:
    """Read one line from ``fd``; empty if the writer closed it or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").split("\n", 1)[0] if b"\n" in data else ""


def _wait_exit(pid: int, timeout: float) -> bool:
    """Wait for a process that is not our child to exit, through a pidfd."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([pidfd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(pidfd)


def stop(directory: Path = DEFAULT_DIR, timeout: float = 30.0) -> bool:
    """Stop the server in ``directory`` and its pods; False if none was running."""
    info = running(Path(directory).expanduser().resolve())
    if info is None:
        return False
    os.kill(info.pid, signal.SIGTERM)
    if not _wait_exit(info.pid, timeout):
        os.killpg(info.pid, signal.SIGKILL)
        _wait_exit(info.pid, 5)
    (info.directory / STATE_FILE).unlink(missing_ok=True)
    return True


class DevCluster:
    """A devcluster for the length of a ``with`` block.

    >>> with DevCluster() as cluster:              # doctest: +SKIP
    ...     os.environ["KUBECONFIG"] = str(cluster.kubeconfig_path)

    Without ``directory`` it lives in a temporary directory removed on exit. Exiting stops
    the server, which kills every pod process it started.
    """

    def __init__(self, directory: Path | str | None = None, port: int = 0) -> None:
        self._owned_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="sandboxkit-devcluster-"))
        self.port = port
        self._info: ClusterInfo | None = None

    @property
    def info(self) -> ClusterInfo:
        if self._info is None:
            raise DevClusterError("the devcluster is not running; use it in a `with` block")
        return self._info

    @property
    def kubeconfig_path(self) -> Path:
        return self.info.kubeconfig_path

    @property
    def url(self) -> str:
        return self.info.url

    def __enter__(self) -> DevCluster:
        self._info, _ = start(self.directory, self.port)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stop(self.directory)
        self._info = None
        if self._owned_dir:
            shutil.rmtree(self.directory, ignore_errors=True)
