"""One exec session engine: markers, deadline, grace and kill, for every exec backend.

The Kubernetes exec API and Docker's differ only in how bytes travel (WebSocket channels,
or Docker's 8-byte frame headers on a hijacked connection) and in where the exit code comes
from (the Status on the error channel, or ``exec inspect``). What a call must do with those
bytes is the same, and lives here once, in :class:`ExecSession`:

* Parse before emitting. Every frame a pump returned is split into output and the
  wrapper's markers (:class:`~.wrapper.OutputStream`) before any of it reaches a callback:
  a callback that raises (Ctrl-C in a notebook) must not cost a marker, such as the process
  group id needed to kill the command.
* Grace. Once both end markers are in, everything the command wrote has arrived (the pipes
  are FIFOs). The session then waits ``grace`` seconds for the stream to close (Kubernetes:
  the Status, :data:`~.kubernetes.exec.STATUS_GRACE`; Docker: the daemon's end of stream,
  :data:`~.docker.exec.END_WAIT`) and otherwise stops there: a background child holds the
  pipes, and the markers say all there is to say.
* Kill on timeout or interrupt. Neither API can kill an exec'd process; closing the stream
  leaves it running. At the deadline (or on the way out of an exception) the session waits
  briefly for the start marker if it has not come, calls ``kill(kind, pgid)`` (a second
  exec) and collects the last output for :data:`KILL_DRAIN` seconds. On an exception the
  callbacks are muted first, so one that raised is not called again meanwhile.
* Exit codes are never invented: the backend's exit-code source comes first, the end
  marker's status second; neither, and the stream ended without an exit code, is an
  :class:`~sandboxkit.errors.ExecProtocolError` (after a timeout, -1: the stream was
  abandoned before the status arrived).

A backend supplies a :class:`FrameSource` (frames in, stdin out, in whatever threads its
transport needs) and an :data:`ExitCodeSource`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from ..errors import CommandTimeout, ExecProtocolError, SandboxError
from ..models import CommandResult
from .wrapper import OutputStream

__all__ = [
    "KILL_DRAIN",
    "START_WAIT",
    "STDERR",
    "STDOUT",
    "ExecSession",
    "ExitCodeSource",
    "FrameSource",
    "Kill",
    "Outcome",
    "check_call",
    "command_result",
    "finish",
]

STDOUT, STDERR = 1, 2
"""The output channel numbers: the same in the Kubernetes channel protocol and in Docker's
multiplexed stream."""

KILL_DRAIN = 2.0
"""After killing the remote process group, seconds spent collecting its last output."""

START_WAIT = 1.0
"""Before a kill, seconds to wait for the start marker (the process group id)."""

ExitCodeSource = Callable[[], int | None]
"""Called once the stream is over: the exit code the server reports, or None if it has
none (yet). May raise for a server-side failure (ExecError)."""

Kill = Callable[[str, int], None]
"""``kill(kind, pid)`` with the start marker's kind (G: process group, T: process tree);
swallows its own errors, as the timeout or interrupt is what the caller must see."""


class FrameSource(Protocol):
    """One exec stream as the session sees it. A source sends stdin itself, as fast as
    its transport takes it, so that a command that does not read its input cannot stop
    the session from reading the command's output."""

    @property
    def closed(self) -> bool:
        """The stream is over: no more frames will come."""
        ...

    def pump(self, timeout: float | None) -> Iterable[tuple[int, bytes]]:
        """Wait up to ``timeout`` seconds (None: without limit) and return the
        ``(channel, data)`` frames that arrived meanwhile (possibly none)."""
        ...


@dataclass(frozen=True)
class Outcome:
    """How a session ended: the exit code, and whether a timeout (the client's deadline
    or the in-sandbox watchdog) killed the command."""

    exit_code: int
    timed_out: bool


class ExecSession:
    """Drives one exec stream to its end (see the module docstring).

    ``kill`` None means an unwrapped command: there are no markers to wait for and nothing
    to kill, so a timeout only ends the call.
    """

    def __init__(self, frames: FrameSource, stdout: OutputStream, stderr: OutputStream,
                 exit_code: ExitCodeSource, *, kill: Kill | None, grace: float) -> None:
        self._frames = frames
        self._streams = {STDOUT: stdout, STDERR: stderr}
        self._exit_source = exit_code
        self._kill = kill
        self._grace = grace
        self.start: tuple[str, int] | None = None  # (G|T, pgid or pid)
        self.end: tuple[str, int] | None = None  # (X|K, exit status)

    @property
    def _output_done(self) -> bool:
        return all(stream.ended for stream in self._streams.values())

    def run(self, deadline: float | None) -> Outcome:
        """Run until the command is over, or kill it at ``deadline`` (a monotonic time).
        On any exception, the remote command is killed before it propagates."""
        try:
            return self._run(deadline)
        except BaseException:
            self._abort()
            raise
        finally:
            for stream in self._streams.values():
                stream.finish()

    def _run(self, deadline: float | None) -> Outcome:
        grace_until: float | None = None
        while not self._frames.closed:
            now = time.monotonic()
            if self._output_done:
                if grace_until is None:
                    grace_until = now + self._grace
                if now >= grace_until:
                    break  # a background child holds the pipes; the markers say it all
            elif deadline is not None and now >= deadline:
                return self._time_out()
            limits = [t - now for t in (grace_until, deadline) if t is not None]
            self._step(max(min(limits), 0.0) if limits else None)
        watchdog = self.end is not None and self.end[0] == "K"
        return Outcome(self._exit_code(), timed_out=watchdog)

    def _step(self, timeout: float | None) -> None:
        output: list[tuple[OutputStream, list[bytes]]] = []
        for channel, data in self._frames.pump(timeout):
            stream = self._streams.get(channel)
            if stream is None:
                continue
            pieces, markers = stream.split(data)
            for kind, value in markers:
                if kind in ("G", "T"):
                    self.start = (kind, value)
                elif self.end is None:
                    self.end = (kind, value)
            output.append((stream, pieces))
        for stream, pieces in output:
            stream.emit(pieces)

    def _exit_code(self) -> int:
        code = self._exit_source()
        if code is None and self.end is not None:
            code = self.end[1]
        if code is None:
            raise ExecProtocolError("the exec stream ended without an exit status")
        return code

    def _time_out(self) -> Outcome:
        """Kill the remote group, collect what it wrote until it died, report the timeout."""
        if self._kill is not None:
            self._kill_started()
            self._pump_until(lambda: self._output_done, KILL_DRAIN)
        code = -1  # unknown: the stream was abandoned before any status arrived
        with contextlib.suppress(SandboxError):
            code = self._exit_code()
        return Outcome(code, timed_out=True)

    def _kill_started(self) -> None:
        """Kill what the start marker names, waiting briefly for it, unless the command is
        over already."""
        if self._kill is None or self._frames.closed or self._output_done:
            return
        if self.start is None:
            self._pump_until(lambda: self.start is not None, START_WAIT)
        if self.start is not None and self.start[1] > 1 and not self._frames.closed:
            self._kill(*self.start)

    def _pump_until(self, done: Callable[[], bool], seconds: float) -> None:
        until = time.monotonic() + seconds
        while not done() and not self._frames.closed:
            left = until - time.monotonic()
            if left <= 0:
                return
            self._step(left)

    def _abort(self) -> None:
        """On the way out of an interrupt or a callback error: kill the remote command.
        Callbacks are muted first, so one that raised is not called again meanwhile."""
        for stream in self._streams.values():
            stream.muted = True
        with contextlib.suppress(Exception):
            self._kill_started()


def check_call(argv: list[str], timeout: float | None, output_limit: int) -> None:
    """ValueError for a call no exec can make: one check for every way of running one."""
    if not argv or not all(isinstance(arg, str) for arg in argv):
        raise ValueError(f"argv must be a non-empty list of strings, got {argv!r}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if output_limit < 0:
        raise ValueError(f"output_limit must be >= 0, got {output_limit!r}")


def command_result(command: str, exit_code: int, stdout: OutputStream, stderr: OutputStream,
                   started: float) -> CommandResult:
    """The result of a call that began at monotonic time ``started``, with what the
    streams kept."""
    return CommandResult(
        command=command, exit_code=exit_code, stdout_bytes=stdout.value(),
        stderr_bytes=stderr.value(), duration=time.monotonic() - started,
        truncated=stdout.truncated or stderr.truncated)


def finish(command: str, outcome: Outcome, stdout: OutputStream, stderr: OutputStream,
           started: float, timeout: float | None) -> CommandResult:
    """The call's result; raises :class:`CommandTimeout` carrying it when a timeout killed
    the command."""
    result = command_result(command, outcome.exit_code, stdout, stderr, started)
    if outcome.timed_out:
        raise CommandTimeout(command, timeout or 0.0, result)
    return result
