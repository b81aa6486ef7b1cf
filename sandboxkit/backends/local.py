"""LocalSandbox: the Sandbox contract as plain local processes. NOT isolation.

For machines with neither a cluster nor Docker, and for fast tests: magics and notebooks run
anywhere. A sandbox is a private working directory (mode 0700, under the system temporary
directory); each command is ``/bin/sh -c CMD`` started there as a process of the current
user, in a session of its own, with the configured env (and ``HOME``/``TMPDIR`` pointing
into the sandbox directory) and the configured timeout. Nothing else is contained: commands
see and can change the whole machine, absolute paths are the host's, and the image,
resources, network and security settings are ignored. The first sandbox of a process warns
with :class:`LocalSandboxWarning` so this never goes unnoticed; filter it with
``warnings.filterwarnings("ignore", category=LocalSandboxWarning)`` once you know.

A timeout or Ctrl-C kills the command's whole process group; teardown kills every group the
sandbox started (background children included) and deletes the directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import posixpath
import pty
import select
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import termios
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from .. import metrics
from ..config import SANDBOX_APP_LABEL, SandboxConfig
from ..errors import CommandTimeout, SandboxError, SandboxNotFound
from ..manifests import ID_LABEL, new_sandbox_name
from ..models import CommandResult, SandboxStatus
from .archive import extract, pack, upload_source
from .base import OutputCallback, ProgressCallback, Sandbox, Stdin, command_argv
from .stdin import SPOOL_MEMORY, STDIN_CHUNK
from .terminal import FdOutput, set_window_size
from .wrapper import OutputStream

__all__ = ["LocalSandbox", "LocalSandboxWarning", "local_root"]

EXIT_GRACE = 0.05
"""Seconds to keep reading output after the command exited: a background child that still
holds the pipes does not hold up the call (what the Kubernetes backend's end markers do)."""

_READ_SIZE = 256 << 10
_warned = False
_warned_lock = threading.Lock()


class LocalSandboxWarning(UserWarning):
    """A LocalSandbox runs commands directly on this machine, without isolation."""


def local_root() -> Path:
    """The directory holding this user's local sandboxes."""
    return Path(tempfile.gettempdir()) / f"sandboxkit-local-{os.getuid()}"


class LocalSandbox(Sandbox):
    """Commands as local processes in a private working directory -- **not isolation**.

    Use it where neither Docker nor a cluster exists (a laptop, CI for notebooks, unit
    tests). Commands run with your user's rights on the real filesystem; only the working
    directory, ``HOME`` and ``TMPDIR`` are the sandbox's own. See the module docstring.
    """

    def __init__(self, *, config: SandboxConfig | None = None, **overrides: Any) -> None:
        overrides.setdefault("execution_backend", "local")
        self.config = SandboxConfig.resolve(config, **overrides)
        self._name = self.config.name or new_sandbox_name()
        self._path: Path | None = None
        self._created = ""
        self._events: list[dict[str, Any]] = []
        self._groups: set[int] = set()  # process groups started, killed on teardown
        self._torn_down = False
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def path(self) -> Path | None:
        """The sandbox's directory; None before :meth:`init` and after :meth:`teardown`."""
        return self._path

    def __repr__(self) -> str:
        return f"LocalSandbox({self._name!r}, path={str(self._path) if self._path else None})"

    # --- lifecycle ------------------------------------------------------------------------

    def init(self, on_progress: ProgressCallback | None = None) -> Self:
        """Create the sandbox directory; idempotent. Warns (LocalSandboxWarning) once per
        process that commands are not isolated."""
        global _warned
        with self._lock:
            if self._path is not None:
                return self
            if self._torn_down:
                raise SandboxError(f"sandbox {self._name} was torn down; create a new one")
            started = time.monotonic()
            with _warned_lock:
                if not _warned:
                    _warned = True
                    warnings.warn(
                        "execution_backend='local' runs commands as plain processes of your "
                        "user on this machine: it is NOT isolation. Use 'docker' or "
                        "'kubernetes' for untrusted code.", LocalSandboxWarning, stacklevel=2)
            root = local_root()
            root.mkdir(mode=0o700, exist_ok=True)
            path = root / self._name
            path.mkdir(mode=0o700)
            (path / "tmp").mkdir(mode=0o700)
            self._path = path
            self._created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            self._event("Created", f"created directory {path}")
            metrics.record_created(self.config.execution_backend)
            if on_progress is not None:
                on_progress("created", f"directory {path}")
            self._event("Started", "ready for commands")
            metrics.record_started(self.config.execution_backend, time.monotonic() - started)
            if on_progress is not None:
                on_progress("running", f"local sandbox {self._name} is ready")
            return self

    def _event(self, reason: str, message: str) -> None:
        self._events.append({"type": "Normal", "reason": reason, "message": message,
                             "count": 1, "time": datetime.now(UTC).strftime(
                                 "%Y-%m-%dT%H:%M:%SZ"), "object": f"sandbox/{self._name}"})

    def teardown(self, wait: bool = False) -> None:
        """Kill every process group the sandbox started and delete its directory;
        idempotent (``wait`` is accepted for the contract: this is always synchronous)."""
        with self._lock:
            path, groups = self._path, list(self._groups)
            self._path = None
            self._groups.clear()
            self._torn_down = True
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        if path is not None:
            metrics.record_stopped(self.config.execution_backend)
            shutil.rmtree(path, ignore_errors=True)

    @classmethod
    def attach(cls, name: str, *, config: SandboxConfig | None = None,
               **overrides: Any) -> LocalSandbox:
        """Take over this user's local sandbox ``name`` (its directory under
        :func:`local_root`), say after a kernel restart. Its processes are not adopted:
        teardown deletes the directory, and the other process's commands stay its own."""
        sandbox = cls(config=config, name=name, **overrides)
        path = local_root() / sandbox.name
        if not path.is_dir() or path.is_symlink():
            raise SandboxNotFound(f"no local sandbox named {sandbox.name} in {local_root()}",
                                  name=sandbox.name)
        sandbox._path = path
        sandbox._created = _created(path)
        metrics.record_attached(sandbox.config.execution_backend)
        return sandbox

    @classmethod
    def list_sandboxes(cls, config: SandboxConfig | None = None) -> list[SandboxStatus]:
        """This user's local sandboxes (the directories under :func:`local_root`), oldest
        first; ``config`` has nothing to choose here and is accepted for the contract."""
        SandboxConfig.resolve(config)
        root = local_root()
        paths = sorted(root.iterdir()) if root.is_dir() else []
        statuses = [_status(path.name, _created(path), {}, ()) for path in paths
                    if path.is_dir() and not path.is_symlink()]
        return sorted(statuses, key=lambda status: (status.created, status.name))

    def _logs(self, tail: int | None) -> str:
        """Always empty once started: a local sandbox has no main process, only the
        commands it ran, whose output their results hold."""
        self._require_ready(self._path)
        return ""

    def status(self) -> SandboxStatus:
        if self._path is None:
            return SandboxStatus(name=self._name, namespace="", job_phase="Missing")
        return _status(self._name, self._created, self.config.labels, tuple(self._events))

    # --- commands -------------------------------------------------------------------------

    def _environment(self, path: Path) -> dict[str, str]:
        """A command's environment: ours, with the sandbox's HOME and TMPDIR and its env."""
        return {**os.environ, "HOME": str(path), "TMPDIR": str(path / "tmp"),
                **self.config.env}

    def open_terminal(self, argv: Sequence[str]) -> PtyTerminal:
        """``argv`` on a new pseudo-terminal, in the sandbox's directory."""
        path = self._require_ready(self._path)
        terminal = PtyTerminal(argv, cwd=self.config.workdir or path,
                               env=self._environment(path))
        with self._lock:
            self._groups.add(terminal.pid)  # killed on teardown like any command
        return terminal

    def _execute(
        self, cmd: str, *, timeout: float | None, env: Mapping[str, str] | None,
        workdir: str | None, stdin: Stdin | None, on_stdout: OutputCallback | None,
        on_stderr: OutputCallback | None,
    ) -> CommandResult:
        path = self._require_ready(self._path)
        timeout = self._timeout_or_default(timeout)
        data = stdin.encode() if isinstance(stdin, str) else stdin
        started = time.monotonic()
        process = subprocess.Popen(
            command_argv(cmd, env=env, workdir=workdir),
            cwd=self.config.workdir or path, env=self._environment(path),
            start_new_session=True,
            stdin=subprocess.DEVNULL if data is None else subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        with self._lock:
            self._groups.add(process.pid)  # the session leader's pid is the group's id
        limit = self.config.output_limit
        stdout = OutputStream(limit, on_stdout, None, None)
        stderr = OutputStream(limit, on_stderr, None, None)
        try:
            timed_out = _drive(process, data, stdout, stderr,
                               None if timeout is None else started + timeout)
        except BaseException:  # Ctrl-C or a callback's error: the command must not live on
            stdout.muted = stderr.muted = True
            _kill(process)
            raise
        finally:
            stdout.finish()
            stderr.finish()
            _forget_if_empty(self._groups, process.pid, self._lock)
        code = process.returncode
        result = CommandResult(
            command=cmd, exit_code=128 - code if code < 0 else code,
            stdout_bytes=stdout.value(), stderr_bytes=stderr.value(),
            duration=time.monotonic() - started,
            truncated=stdout.truncated or stderr.truncated)
        if timed_out:
            raise CommandTimeout(cmd, timeout or 0.0, result)
        return result

    # --- files ----------------------------------------------------------------------------

    def _resolve(self, remote_path: str) -> str:
        """A sandbox path on this machine: relative paths start in the working directory."""
        base = self.config.workdir or str(self._require_ready(self._path))
        trailing = "/" if remote_path.endswith("/") else ""
        return posixpath.join(base, remote_path).rstrip("/") + trailing or "/"

    def upload(self, local_path: str | os.PathLike[str], remote_path: str) -> None:
        source, parent, name = upload_source(local_path, self._resolve(remote_path))
        _copy(source, name, posixpath.join(parent, name))

    def download(self, remote_path: str, local_path: str | os.PathLike[str]) -> None:
        source = Path(self._resolve(remote_path.rstrip("/") or "/"))
        if not source.exists() and not source.is_symlink():
            raise FileNotFoundError(2, "no such file or directory in the sandbox", remote_path)
        _copy(source, source.name, local_path)


def _created(path: Path) -> str:
    """A sandbox directory's age as an RFC 3339 timestamp: its last change, as Linux keeps
    no creation time that Python 3.11 can read."""
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(name: str, created: str, labels: Mapping[str, str],
            events: tuple[dict[str, Any], ...]) -> SandboxStatus:
    """A running local sandbox in the Job/pod vocabulary widgets and listings read."""
    key, value = SANDBOX_APP_LABEL
    return SandboxStatus(
        name=name, namespace="", job_phase="Active", pod_name=name, pod_phase="Running",
        container_state="running", node=socket.gethostname(), image="(local processes)",
        created=created, labels={**labels, key: value, ID_LABEL: name}, events=events,
        job_active=1)


def _copy(source: Path, name: str, target: str | os.PathLike[str]) -> None:
    """Copy through a tar archive so that both directions follow the exact rules (modes,
    symlinks, merging into directories, refusing escapes) of the container backends."""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY) as archive:
        pack(source, name, archive)
        archive.seek(0)
        extract(archive, posixpath.basename(name), target)


def _forget_if_empty(groups: set[int], group: int, lock: threading.Lock) -> None:
    """Keep only groups that still have members (background children): an empty group's id
    may be reused by an unrelated process, which teardown must not kill."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        with lock:
            groups.discard(group)
    except PermissionError:
        pass


def _kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the command's process group and reap the command."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _drive(process: subprocess.Popen[bytes], stdin: bytes | None, stdout: OutputStream,
           stderr: OutputStream, deadline: float | None) -> bool:
    """Feed stdin, pass output on, wait for the exit; True if the deadline killed it.

    One thread multiplexes the pipes and the exit (a pidfd where the kernel has them), so
    the deadline holds however the command behaves.

    This is not the exec session engine (:mod:`.session`) on purpose: that engine's rules
    rest on the wrapper's markers (the grace starts at both end markers, the kill waits for
    the start marker's group id), and here there is no wrapper: the exit is the process's
    own (so the grace starts at the exit), and the group id is known at spawn.
    """
    selector = selectors.DefaultSelector()
    streams = {process.stdout: stdout, process.stderr: stderr}
    for pipe in streams:
        os.set_blocking(pipe.fileno(), False)  # type: ignore[union-attr]
        selector.register(pipe, selectors.EVENT_READ)
    pending = memoryview(stdin) if stdin is not None else None
    if process.stdin is not None:
        os.set_blocking(process.stdin.fileno(), False)
        selector.register(process.stdin, selectors.EVENT_WRITE)
    pidfd = _pidfd(process.pid)
    if pidfd is not None:
        selector.register(pidfd, selectors.EVENT_READ)
    exited_at: float | None = None
    timed_out = False
    try:
        while streams or exited_at is None:
            now = time.monotonic()
            if exited_at is None and process.poll() is not None:
                exited_at = now
            if exited_at is not None and (not streams or now - exited_at >= EXIT_GRACE):
                break  # all read, or a background child holds the pipes (its output is dropped)
            if exited_at is None and deadline is not None and now >= deadline:
                _kill(process)
                timed_out = True
                exited_at = now
                continue
            waits = [t - now for t in (deadline if exited_at is None else None,
                                       exited_at + EXIT_GRACE if exited_at else None)
                     if t is not None]
            if pidfd is None and exited_at is None:
                waits.append(0.05)  # no pidfd: the exit is noticed by polling
            for key, _ in selector.select(max(min(waits), 0) if waits else None):
                if key.fileobj is pidfd:
                    selector.unregister(pidfd)
                    continue
                if key.fileobj is process.stdin:
                    pending = _feed(process, selector, pending)
                    continue
                chunk = os.read(key.fd, _READ_SIZE)
                if chunk:
                    streams[key.fileobj].emit([chunk])  # type: ignore[index]
                else:
                    selector.unregister(key.fileobj)
                    del streams[key.fileobj]  # type: ignore[arg-type]
        process.wait()
    finally:
        selector.close()
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        if pidfd is not None:
            os.close(pidfd)
    return timed_out


def _feed(process: subprocess.Popen[bytes], selector: selectors.BaseSelector,
          pending: memoryview | None) -> memoryview | None:
    """Write what the pipe takes; close it (EOF) when all is sent or the reader is gone."""
    assert process.stdin is not None
    try:
        if pending:
            written = os.write(process.stdin.fileno(), pending[:STDIN_CHUNK])
            pending = pending[written:]
            if pending:
                return pending
    except BlockingIOError:
        return pending
    except (BrokenPipeError, OSError):
        pass
    selector.unregister(process.stdin)
    with contextlib.suppress(OSError):
        process.stdin.close()
    return None


def _pidfd(pid: int) -> int | None:
    with contextlib.suppress(AttributeError, OSError):
        return os.pidfd_open(pid)
    return None


class PtyTerminal(FdOutput):
    """A :class:`sandboxkit.backends.terminal.TerminalStream` on a local process with a pty: the
    process leads a new session whose controlling terminal is the pty, so the remote-side
    line discipline turns Ctrl-C into SIGINT for its foreground job, as a container's
    terminal does."""

    def __init__(self, argv: Sequence[str], *, cwd: str | os.PathLike[str],
                 env: Mapping[str, str]) -> None:
        master, slave = pty.openpty()
        try:
            self._process = subprocess.Popen(
                list(argv), stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
                start_new_session=True, preexec_fn=_take_terminal)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        super().__init__(master)

    @property
    def pid(self) -> int:
        return self._process.pid

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._fd, view):]
            except BlockingIOError:
                select.select([], [self._fd], [])

    def close_input(self) -> None:
        self.write(b"\x04")  # the terminal's EOF character (canonical mode)

    def resize(self, columns: int, rows: int) -> None:
        with contextlib.suppress(OSError):
            set_window_size(self._fd, columns, rows)

    def exit_code(self) -> int:
        code = self._process.wait()
        return 128 - code if code < 0 else code

    def close(self) -> None:
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGHUP)  # as a terminal hangup does
        self._close_output()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=5)


def _take_terminal() -> None:
    """In the child, after setsid: make the inherited pty its controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
