"""Interactive terminals: relay a local TTY to a terminal running in a sandbox.

``sandboxkit shell`` is ``kubectl exec -it`` for every backend. Each backend opens a
:class:`TerminalStream` (a remote process with a terminal); :func:`relay` is the one loop
that connects it to the local terminal, so the backends share raw mode, window-size
propagation and the exit code's handling rather than each having its own.

Why raw mode: the remote side has a terminal of its own, which echoes, edits lines and
turns Ctrl-C into SIGINT. The local terminal must pass every byte through untouched
(Ctrl-C is ``\\x03``, Ctrl-D ``\\x04``), or both would do it. The local mode is restored on
every way out, exceptions included.

Why a self-pipe for SIGWINCH: the loop blocks in ``select``; a signal handler that only
set a flag would be seen at the next byte, so it writes to a pipe the loop waits on.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import shlex
import signal
import struct
import termios
import tty
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .base import Sandbox

__all__ = ["FdOutput", "TerminalStream", "default_shell", "raw_terminal", "relay",
           "set_window_size", "shell_commands", "window_size"]

_READ = 64 << 10


class TerminalStream(Protocol):
    """A process running with a terminal, seen from the client."""

    def fileno(self) -> int:
        """A descriptor that becomes readable when :meth:`read` may have something."""

    @property
    def busy(self) -> bool:
        """True while data is buffered on our side (input not yet sent, output decoded
        but not returned): the loop then polls instead of blocking."""

    def read(self) -> bytes | None:
        """Output available now (possibly b""); None once the remote process is over."""

    def write(self, data: bytes) -> None:
        """Send keyboard input."""

    def close_input(self) -> None:
        """The local input ended (not a terminal, and EOF): tell the remote side."""

    def resize(self, columns: int, rows: int) -> None:
        """Set the remote terminal's window size."""

    def exit_code(self) -> int:
        """The remote process's exit status, once :meth:`read` returned None."""

    def close(self) -> None:
        """Release the connection (and end the process if it still runs)."""


class FdOutput:
    """The reading half of a :class:`TerminalStream` whose output arrives on a descriptor of
    our own (a pty's master, a pipe fed by a thread): non-blocking reads, and the end of the
    stream as EOF or, on a pty, EIO (every holder of the terminal closed it)."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._ended = False

    def fileno(self) -> int:
        return self._fd

    @property
    def busy(self) -> bool:
        return False

    def read(self) -> bytes | None:
        if self._ended:
            return None
        try:
            data = os.read(self._fd, _READ)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            data = b""
        if not data:
            self._ended = True
            return None
        return data

    def _close_output(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def window_size(fd: int) -> tuple[int, int] | None:
    """``(columns, rows)`` of the terminal on ``fd``; None if it is not a terminal or has
    no size (0x0, as a fresh pty has)."""
    try:
        packed = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return None
    rows, columns = struct.unpack("HHHH", packed)[:2]
    return (columns, rows) if columns and rows else None


def set_window_size(fd: int, columns: int, rows: int) -> None:
    """Set the size of the terminal on ``fd`` (a pty's master: the kernel then sends SIGWINCH
    to the terminal's foreground process group)."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Put the terminal on ``fd`` in raw mode for the block, then restore it exactly (even
    when the block raises); a no-op if ``fd`` is not a terminal."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def relay(stream: TerminalStream, stdin_fd: int = 0, stdout_fd: int = 1) -> int:
    """Connect ``stream`` to the local terminal until the remote process ends; returns its
    exit code. Closes the stream."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)

    def on_winch(signum: int, frame: object) -> None:
        with contextlib.suppress(OSError):
            os.write(wake_w, b"\0")

    previous = signal.signal(signal.SIGWINCH, on_winch)
    try:
        with raw_terminal(stdin_fd):
            size = window_size(stdin_fd)
            if size is not None:
                stream.resize(*size)
            return _pump(stream, stdin_fd, stdout_fd, wake_r)
    finally:
        signal.signal(signal.SIGWINCH, previous)
        os.close(wake_r)
        os.close(wake_w)
        stream.close()


def _pump(stream: TerminalStream, stdin_fd: int, stdout_fd: int, wake_r: int) -> int:
    reading_input = True
    while True:
        watched = [stream.fileno(), wake_r] + ([stdin_fd] if reading_input else [])
        readable, _, _ = select.select(watched, [], [], 0.01 if stream.busy else None)
        if wake_r in readable:
            os.read(wake_r, 4096)
            size = window_size(stdin_fd)
            if size is not None:
                stream.resize(*size)
        if stdin_fd in readable:
            try:
                data = os.read(stdin_fd, _READ)
            except OSError:  # the terminal went away (hangup)
                data = b""
            if data:
                stream.write(data)
            else:
                reading_input = False
                stream.close_input()
        output = stream.read()
        if output is None:
            return stream.exit_code()
        if output:
            _write_all(stdout_fd, output)


def default_shell(sandbox: Sandbox) -> list[str]:
    """``/bin/bash`` where the image has bash, else ``/bin/sh`` (which every image that can
    run sandboxkit's commands has), found with a quick exec without a terminal."""
    result = sandbox.run_command("command -v bash", timeout=30)
    path = result.stdout.strip()
    return [path] if result.exit_code == 0 and path.startswith("/") else ["/bin/sh"]


def shell_commands(name: str, *, backend: str = "kubernetes", namespace: str | None = None,
                   pod: str | None = None, kubeconfig: str | None = None,
                   context: str | None = None, container: str = "sandbox") -> list[str]:
    """The command lines that open a shell in sandbox ``name`` from a terminal: ``sandboxkit
    shell`` and, for a Kubernetes sandbox whose pod is known, the ``kubectl exec -it``
    equivalent. A notebook cannot host a raw terminal, so ``%sandbox_shell`` prints these to
    paste into a JupyterLab terminal; every value is shell-quoted, and the cluster settings
    are spelled out because that terminal need not share the kernel's environment."""
    prefix = f"KUBECONFIG={shlex.quote(kubeconfig)} " if kubeconfig else ""
    cluster = ["--context", context] if context else []
    ours = ["sandboxkit", "shell", name]
    if backend != "kubernetes":
        return [shlex.join([*ours, "--backend", backend])]
    scope = ["-n", namespace] if namespace else []
    lines = [prefix + shlex.join([*ours, *scope, *cluster])]
    if pod:
        lines.append(prefix + shlex.join(["kubectl", *cluster, "exec", "-it", *scope, pod,
                                          "-c", container, "--", "/bin/sh"]))
    return lines
