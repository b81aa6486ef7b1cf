"""Run the devcluster as a background process and find it again.

The server runs in its own process (``python -m sandboxkit.devcluster run``) so that it
outlives a CLI call, never shares an event loop or signal handlers with a notebook kernel or
test runner, and takes its pod processes with it when it exits. A state file in the cluster
directory names the running server, which makes ``start`` idempotent and ``stop``/``status``
possible from any shell. The state file records the server's pid *and* its start time, so
a recycled pid is never mistaken for the server, and a server run in the foreground
(``sandboxkit devcluster run``, whose command line names no module) is found like a
background one. ``start`` holds a lock on the directory from its check to the server's
readiness, so concurrent starts on one directory yield one server, not several orphans.

A server started for one process (``DevCluster``, ``sandboxkit.ensure_cluster``)
is told that process's pid and stops when it exits, however it exits: a notebook kernel
killed by nbmake or a SIGKILLed test runner leaves no server behind. The server watches a
pidfd rather than using ``PR_SET_PDEATHSIG``, which fires when the starting *thread* ends
(any short-lived thread of a kernel) and cannot run the server's orderly shutdown.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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
LOCK_FILE = ".devcluster.lock"


class DevClusterError(RuntimeError):
    """The devcluster could not be started or stopped; the message says what to do."""


@dataclass(frozen=True)
class ClusterInfo:
    """A running server: where its state lives, its pid and the URL it serves."""

    directory: Path
    pid: int
    url: str
    isolation: str = ""  # how its pods are confined, in words (ContainerRuntime.describe)

    @property
    def kubeconfig_path(self) -> Path:
        return self.directory / "kubeconfig"


def _start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot); None if it is gone.

    A pid and its start time together name one process for as long as the machine runs,
    which a pid alone does not once pids wrap around. A zombie counts as gone: a server
    that died without its parent reaping it yet serves nothing.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces or parentheses: fields follow the last ')'
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):  # field 3, the state
        return None
    return int(fields[19])  # field 22


def write_state(directory: Path, url: str, isolation: str = "") -> None:
    """Called by the server once it answers, so a state file always names a live server."""
    pid = os.getpid()
    state = {"pid": pid, "url": url, "start_time": _start_time(pid), "isolation": isolation}
    tmp = directory / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state))
    tmp.replace(directory / STATE_FILE)


def _is_devcluster(pid: int, start_time: object) -> bool:
    """Whether ``pid`` is still the server that wrote the state file."""
    if isinstance(start_time, int):
        return _start_time(pid) == start_time
    try:  # a state file written before start times were recorded
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"sandboxkit.devcluster" in cmdline


def running(directory: Path = DEFAULT_DIR) -> ClusterInfo | None:
    """The server recorded in ``directory``, if it is still alive."""
    directory = Path(directory).expanduser().resolve()
    try:
        state = json.loads((directory / STATE_FILE).read_text())
        pid = int(state.get("pid", 0))
        url = str(state["url"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if pid <= 0 or not _is_devcluster(pid, state.get("start_time")):
        return None
    return ClusterInfo(directory, pid, url, str(state.get("isolation", "")))


@contextlib.contextmanager
def _startup_lock(directory: Path) -> Iterator[None]:
    """Serialize starts on one directory: the second waits, then finds the first running.

    The lock file's descriptor is not inherited by the server, so the lock ends with the
    ``with`` block (or this process), never outliving a failed start.
    """
    with open(directory / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _log_tail(directory: Path, lines: int = 20) -> str:
    try:
        return "\n".join((directory / LOG_FILE).read_text().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start(
    directory: Path = DEFAULT_DIR, port: int = 0, timeout: float = 60.0, *,
    watch_pid: int | None = None,
) -> tuple[ClusterInfo, bool]:
    """Start a server in the background; returns it and whether it was started now.

    Blocks until the server reports it is serving, by reading a line from a pipe the child
    writes once ready -- no polling. If a server already runs in ``directory`` (or another
    ``start`` is bringing one up), that one is returned instead of starting a second.
    With ``watch_pid``, a server started now stops once that process exits.
    """
    directory = Path(directory).expanduser().resolve()
    existing = running(directory)
    if existing is not None:
        return existing, False
    directory.mkdir(parents=True, exist_ok=True)
    with _startup_lock(directory):
        existing = running(directory)
        if existing is not None:
            return existing, False
        return _spawn(directory, port, timeout, watch_pid), True


def _spawn(directory: Path, port: int, timeout: float, watch_pid: int | None) -> ClusterInfo:
    """Start the server process and wait for its ``ready URL`` line."""
    read_fd, write_fd = os.pipe()
    watch = [] if watch_pid is None else ["--watch-pid", str(watch_pid)]
    try:
        with open(directory / LOG_FILE, "ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "sandboxkit.devcluster", "run", "--dir", str(directory),
                 "--port", str(port), "--ready-fd", str(write_fd), *watch],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(write_fd,), start_new_session=True,
            )
    finally:
        os.close(write_fd)
    deadline = time.monotonic() + timeout
    try:
        line = _read_line(read_fd, timeout)
    finally:
        os.close(read_fd)
    if line.startswith("ready "):
        # the state file, written before the ready line, also says how pods are isolated
        state = running(directory)
        return state or ClusterInfo(directory, child.pid, line.split(" ", 1)[1].strip())
    status = child.poll()
    if status is None and time.monotonic() < deadline:
        # The pipe closed without "ready": the child is exiting. Its files close before
        # it can be reaped, so wait for its status rather than calling it a timeout.
        with contextlib.suppress(subprocess.TimeoutExpired):
            status = child.wait(timeout=10)
    if status is None:
        # Not ready in time: take it down with anything it started (its own session).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        what = f"did not start within {timeout:.0f}s"
    else:
        what = f"exited with status {status} while starting"
    raise DevClusterError(
        f"the devcluster {what} (see {directory / LOG_FILE}):\n{_log_tail(directory)}"
    )


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
    """Stop the server in ``directory`` and its pods; False if none was running.

    SIGTERM lets the server kill its pods and remove its state; SIGKILL follows after
    ``timeout`` (pods die with it: bubblewrap ties them to their parent).
    """
    info = running(directory)
    if info is None:
        return False
    try:
        os.kill(info.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    else:
        if not _wait_exit(info.pid, timeout):
            _kill_hard(info.pid)
            _wait_exit(info.pid, 5)
    (info.directory / STATE_FILE).unlink(missing_ok=True)
    return True


def _kill_hard(pid: int) -> None:
    """SIGKILL the server, and its process group when it leads one.

    A background server leads its own session; a foreground ``run`` shares the group of
    the shell or test that started it, which must not be killed with it.
    """
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)


class DevCluster:
    """A devcluster for the length of a ``with`` block.

    >>> with DevCluster() as cluster:              # doctest: +SKIP
    ...     os.environ["KUBECONFIG"] = str(cluster.kubeconfig_path)

    Without ``directory`` it lives in a temporary directory, created on entry and removed
    on exit (also when the server fails to start). Exiting stops the server, which kills
    every pod process it started -- but only a server this block started: entering on a
    directory where one already runs (say, from ``sandboxkit devcluster start``) uses it
    and leaves it running, as its owner expects. A server this block started also stops if
    the process that entered it dies without leaving the block.
    """

    def __init__(self, directory: Path | str | None = None, port: int = 0) -> None:
        self._owned_dir = directory is None
        self._requested = None if directory is None else Path(directory)
        self.directory: Path | None = self._requested
        self.port = port
        self._info: ClusterInfo | None = None
        self._started = False

    @property
    def info(self) -> ClusterInfo:
        """The running server; raises outside the ``with`` block."""
        if self._info is None:
            raise DevClusterError("the devcluster is not running; use it in a `with` block")
        return self._info

    @property
    def kubeconfig_path(self) -> Path:
        """The admin kubeconfig (client certificate in group system:masters)."""
        return self.info.kubeconfig_path

    @property
    def url(self) -> str:
        """The API server's URL, ``https://127.0.0.1:PORT``."""
        return self.info.url

    @property
    def started(self) -> bool:
        """Whether entering the block started the server (False: one already ran there)."""
        return self._started

    def __enter__(self) -> DevCluster:
        directory = self._requested or Path(tempfile.mkdtemp(prefix="sandboxkit-devcluster-"))
        self.directory = directory
        try:
            self._info, self._started = start(directory, self.port, watch_pid=os.getpid())
        except BaseException:
            if self._owned_dir:
                shutil.rmtree(directory, ignore_errors=True)
                self.directory = None
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        directory = self.directory
        try:
            if self._started and directory is not None:
                stop(directory)
        finally:
            self._info = None
            self._started = False
            if self._owned_dir and directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
                self.directory = None
