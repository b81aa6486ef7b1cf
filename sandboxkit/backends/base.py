"""The Sandbox contract every backend implements, and the parts they share.

Why an abstract class rather than a Protocol: the contract's semantics (``check=True``,
per-call env and workdir, ``with`` doing init and teardown, what a timeout raises) are
written once here, so a new backend implements one primitive, :meth:`Sandbox._execute`, plus
the lifecycle and file methods, and the contract test suite holds it to the same behaviour.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from .. import metrics
from ..config import SandboxConfig, validate_text, validate_timeout
from ..errors import CommandTimeout, ConfigError, SandboxError, SandboxGone
from ..models import CommandResult, SandboxStatus
from .stdin import StdinData
from .sync import Diff, SyncReport
from .sync import diff as _diff
from .sync import sync as _sync

if TYPE_CHECKING:
    from .terminal import TerminalStream

__all__ = ["PROGRESS_STAGES", "ArgvSandbox", "OutputCallback", "ProgressCallback", "Sandbox",
           "Stdin", "command_argv"]

OutputCallback = Callable[[bytes], object]
ProgressCallback = Callable[[str, str], None]
"""``on_progress(stage, detail)`` during :meth:`Sandbox.init`: stage is one of
:data:`PROGRESS_STAGES`, in that order, each at most once; detail is a line for a human.

With a warm pool (``SandboxConfig.pool``) the first stage is "claimed" (an idle sandbox was
taken; "scheduled" to "running" follow from its pod) or "cold" (none was idle: the detail
says why, and a cold start's stages follow). An idle sandbox found broken when claimed is
deleted ("discarded", with why) and the next one claimed, which reports "claimed" again."""
PROGRESS_STAGES = ("created", "scheduled", "pulling", "running")
Stdin = str | bytes
# The `cd` runs in a shell whose only inputs are positional parameters: the workdir and the
# argv to exec are data, never spliced into shell source.
_CD_SCRIPT = 'cd "$1" || exit; shift; exec "$@"'
_Handle = TypeVar("_Handle")


def command_argv(
    cmd: str, *, env: Mapping[str, str] | None = None, workdir: str | None = None,
    shell: str = "/bin/sh",
) -> list[str]:
    """The argv that runs ``cmd`` with ``shell -c``, with ``env`` set and in ``workdir``.

    Nothing user-supplied becomes shell source except ``cmd`` itself: variables go through
    ``env NAME=VALUE`` arguments and the directory through ``"$1"`` of a fixed script, so a
    value such as ``$(rm -rf /)`` or ``a b'c`` arrives byte for byte.
    """
    argv = [shell, "-c", cmd]
    if env:
        assignments = []
        for name, value in env.items():
            if not name or "=" in name or "\0" in name or name.startswith("-"):
                raise ConfigError("env", name, "not a valid environment variable name",
                                  "CI=1")
            if "\0" in str(value):
                raise ConfigError(f"env[{name}]", value, "contains a NUL byte", "1")
            assignments.append(f"{name}={value}")
        argv = ["env", *assignments, *argv]
    if workdir:
        if "\0" in workdir:
            raise ConfigError("workdir", workdir, "contains a NUL byte", "/workspace")
        # A relative directory starting with '-' would read as an option to `cd`.
        safe = f"./{workdir}" if workdir.startswith("-") else workdir
        argv = [shell, "-c", _CD_SCRIPT, "sandboxkit-cd", safe, *argv]
    return argv


class Sandbox(ABC):
    """A disposable place to run shell commands and copy files.

    Lifecycle: construct (no I/O), :meth:`init` (create and wait until ready), commands and
    file copies, :meth:`teardown`. ``with`` does ``init()`` on entry (if not done yet) and
    ``teardown()`` on exit, even when the block raises. A command that exits non-zero is a
    result, not an exception, unless ``check=True``.
    """

    config: SandboxConfig
    _torn_down: bool = False
    """Set by :meth:`teardown`: a sandbox is never started again."""

    # --- lifecycle ------------------------------------------------------------------------

    @property
    @abstractmethod
    def name(self) -> str:
        """The sandbox's name, unique in its namespace."""

    @abstractmethod
    def init(self, on_progress: ProgressCallback | None = None) -> Self:
        """Create the sandbox and wait until commands can run; idempotent.

        ``on_progress`` hears the startup stages a backend has (see :data:`ProgressCallback`)
        as they happen, so a notebook can show where a slow start is.
        """

    @abstractmethod
    def status(self) -> SandboxStatus:
        """A snapshot of the sandbox's state; never raises because the sandbox is gone."""

    @abstractmethod
    def teardown(self, wait: bool = False) -> None:
        """Delete the sandbox; idempotent. ``wait=True`` returns only once it is gone."""

    @classmethod
    @abstractmethod
    def attach(cls, name: str, *, config: SandboxConfig | None = None,
               **overrides: Any) -> Self:
        """Take over a running sandbox by name (after a kernel restart, from another
        process), ready for commands.

        Raises :class:`SandboxNotFound` when there is no sandbox of that name where
        ``config`` points, and SandboxGone when it exists but can no longer run commands.
        """

    @classmethod
    @abstractmethod
    def list_sandboxes(cls, config: SandboxConfig | None = None) -> list[SandboxStatus]:
        """A status per sandbox of this backend where ``config`` points (a Kubernetes
        namespace, a Docker daemon, this user's local directory), oldest first."""

    def logs(self, tail: int | None = None) -> str:
        """What the sandbox's main process wrote (``kubectl logs``, ``docker logs``), the last
        ``tail`` lines only when given; decoded as UTF-8 with replacement. Command output is
        not in it: commands return their own. A ``tail`` that is not a count of lines is a
        ConfigError."""
        if tail is not None and (isinstance(tail, bool) or not isinstance(tail, int)
                                 or tail < 0):
            raise ConfigError("tail", tail, "a number of lines, 0 or more", "100")
        return self._logs(tail)

    @abstractmethod
    def _logs(self, tail: int | None) -> str:
        """:meth:`logs` with ``tail`` checked."""

    # --- interactive terminal -------------------------------------------------------------

    def open_terminal(self, argv: Sequence[str]) -> TerminalStream:
        """Start ``argv`` with a terminal and stdin (``kubectl exec -it``), for
        :func:`sandboxkit.backends.terminal.relay`. Backends that cannot yet say so as a
        ConfigError, so ``sandboxkit shell`` reports it as a setting to change."""
        raise ConfigError("execution_backend", self.config.execution_backend,
                          "this backend has no interactive shell yet",
                          "--backend kubernetes")

    # --- commands -------------------------------------------------------------------------

    @abstractmethod
    def _execute(
        self, cmd: str, *, timeout: float | None, env: Mapping[str, str] | None,
        workdir: str | None, stdin: Stdin | None, on_stdout: OutputCallback | None,
        on_stderr: OutputCallback | None,
    ) -> CommandResult:
        """Run ``cmd`` with ``/bin/sh -c``; raise CommandTimeout after ``timeout`` seconds
        (None: the config's ``command_timeout``) once the process is killed."""

    def _require_ready(self, handle: _Handle | None) -> _Handle:
        """``handle`` (what commands and copies use: the pod, the container, the
        directory), or the error for a sandbox that has none: SandboxGone once torn down,
        SandboxError before :meth:`init`. One guard, so every backend words it alike."""
        if handle is None:
            if self._torn_down:
                raise SandboxGone(f"sandbox {self.name} was torn down", reason="TornDown")
            raise SandboxError(f"sandbox {self.name} is not started: call init() first, "
                               "or use it in a `with` block")
        return handle

    def _timeout_or_default(self, timeout: float | None) -> float | None:
        """A command's timeout: the one given, else the config's ``command_timeout``."""
        return self.config.command_timeout if timeout is None else timeout

    def run_command(
        self, cmd: str, *, timeout: float | None = None, env: Mapping[str, str] | None = None,
        workdir: str | None = None, stdin: Stdin | None = None, check: bool = False,
    ) -> CommandResult:
        """Run ``cmd`` through ``/bin/sh -c`` and return its result.

        ``env`` adds variables for this command, ``workdir`` runs it there, ``stdin`` is sent
        and then closed (EOF). ``check=True`` raises :class:`CommandFailed` for a non-zero
        exit. A timeout kills the command and raises :class:`CommandTimeout`.
        """
        result = self._timed_execute(cmd, timeout=timeout, env=env, workdir=workdir,
                                     stdin=stdin, on_stdout=None, on_stderr=None)
        return result.check_returncode() if check else result

    def stream(
        self, cmd: str, *, on_stdout: OutputCallback | None, on_stderr: OutputCallback | None,
        timeout: float | None = None, env: Mapping[str, str] | None = None,
        workdir: str | None = None, stdin: Stdin | None = None,
    ) -> CommandResult:
        """Like :meth:`run_command`, calling ``on_stdout``/``on_stderr`` with each chunk of
        bytes as it arrives -- all of it, even beyond the output limit the result keeps."""
        return self._timed_execute(cmd, timeout=timeout, env=env, workdir=workdir,
                                   stdin=stdin, on_stdout=on_stdout, on_stderr=on_stderr)

    def _timed_execute(self, cmd: str, **options: Any) -> CommandResult:
        """:meth:`_execute`, measured: the one place every backend's commands pass, so
        durations and errors are recorded once (:mod:`sandboxkit.metrics`), and the command
        and timeout are checked once, before any backend sees them (ConfigError). A timeout counts
        both as an error and, with the time it ran, as a duration."""
        validate_text("cmd", cmd, "a shell command string", "echo hello")
        if options.get("timeout") is not None:
            validate_timeout("timeout", options["timeout"], "60")
        backend = self.config.execution_backend
        started = time.perf_counter()
        try:
            result = self._execute(cmd, **options)
        except Exception as exc:
            if isinstance(exc, CommandTimeout):
                metrics.record_command(backend, time.perf_counter() - started)
            metrics.record_command_error(backend, exc)
            raise
        metrics.record_command(backend, time.perf_counter() - started)
        return result

    # --- files ----------------------------------------------------------------------------

    @abstractmethod
    def upload(self, local_path: str | os.PathLike[str], remote_path: str) -> None:
        """Copy a local file or directory tree into the sandbox (binary-safe, with modes).

        ``remote_path`` is the path the source becomes; ending in ``/`` it is a directory the
        source is copied into under its own name.
        """

    @abstractmethod
    def download(self, remote_path: str, local_path: str | os.PathLike[str]) -> None:
        """Copy a file or directory tree out of the sandbox; the mirror of :meth:`upload`."""

    def sync(self, local_dir: str | os.PathLike[str], remote_dir: str, *,
             delete: bool = False, exclude: Sequence[str] = ()) -> SyncReport:
        """Make ``remote_dir`` hold what ``local_dir`` holds, sending only files whose size,
        mode, content or link target differ from a manifest computed in the sandbox (so it
        is right after a kernel restart or a fresh attach), in one :meth:`upload`.

        ``delete=True`` removes remote files that are gone locally; ``exclude`` takes
        .gitignore-style patterns (see :mod:`sandboxkit.backends.sync`). Written once here
        on :meth:`run_command` and :meth:`upload`, so every backend has it.
        """
        return _sync(self, local_dir, remote_dir, delete=delete, exclude=exclude)

    def diff(self, path: str = "/workspace", against: str = "HEAD") -> Diff:
        """What changed at ``path`` in the sandbox: ``git diff AGAINST`` plus untracked
        files in a git checkout, else the changes since the last :meth:`sync`."""
        return _diff(self, path, against)

    # --- context manager ------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.init()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.teardown()


class ArgvSandbox(Sandbox):
    """A backend whose primitive is running an argv (Kubernetes exec, Docker exec): the
    shell command, its env and workdir become an argv here, once, by :func:`command_argv`."""

    def _execute(
        self, cmd: str, *, timeout: float | None, env: Mapping[str, str] | None,
        workdir: str | None, stdin: Stdin | None, on_stdout: OutputCallback | None,
        on_stderr: OutputCallback | None,
    ) -> CommandResult:
        argv = command_argv(cmd, env=env, workdir=workdir)
        data = stdin.encode() if isinstance(stdin, str) else stdin
        return self.exec_argv(argv, stdin=data, timeout=timeout, on_stdout=on_stdout,
                              on_stderr=on_stderr, command_text=cmd)

    @abstractmethod
    def exec_argv(
        self, argv: Sequence[str], *, stdin: StdinData | None = None,
        timeout: float | None = None, on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None, command_text: str | None = None,
    ) -> CommandResult:
        """Run ``argv`` as is (no shell) in the sandbox; ``command_text`` names it in the
        result and errors; ``stdin`` is bytes or a binary file. Timeouts as for
        :meth:`Sandbox._execute`."""
