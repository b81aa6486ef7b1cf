"""Persistent exec sessions, for every exec backend: many commands through few execs.

An exec round trip costs a connection, the server's work to start a process in the
container and, on Kubernetes, the API server's proxy hop, before the command even starts.
A :class:`SessionPool` keeps exec streams open to the in-container loop of :mod:`.loop`
and sends each command there as a request; the one engine,
:class:`~sandboxkit.backends.session.ExecSession`, reads its output, strips its markers
and kills it on timeout or interrupt (a second exec, as for a one-exec call). A backend
supplies a :class:`Session` (how bytes travel on its exec stream), a ``kill`` and a
one-exec ``fallback``.

Threads
    A session runs one command at a time. The pool hands each call an idle session, or
    opens a new one when every session is busy, so commands from several threads run
    concurrently, one session each; at most :data:`MAX_IDLE` stay open between commands.

Failures
    * A session found dead before use (the container restarted, the connection dropped,
      the kubelet closed an idle stream) is discarded and another taken, transparently.
    * A session that ends before the command's begin marker never ran the command: the
      call moves to a fresh session, or, when even a fresh one cannot run the loop (no
      ``/bin/sh``, no ``mkfifo``: :data:`~.loop.UNSUPPORTED`), to one exec per command,
      for good (:attr:`SessionPool.supported`).
    * A session that ends while the command runs raises
      :class:`~sandboxkit.errors.SessionLost` (an ExecProtocolError carrying the output so
      far, exit code -1: never an invented one),
      or the backend's own error for a failed exec (Kubernetes: ExecError) wrapped the
      same way; the sandbox turns it into SandboxGone when the container is gone.
    * After a timeout or an interrupt whose kill left the end markers unread, the session's
      state is unknown and it is closed rather than reused.

Calls with stdin use one exec each (the fallback): the loop's stdin carries the requests,
and a command must never read it.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Protocol

from ..errors import ExecProtocolError, SandboxError, SessionLost
from ..models import CommandResult
from .loop import ACK, BeginFilter, encode_request
from .session import (
    STDERR,
    STDOUT,
    ExecSession,
    Kill,
    Outcome,
    check_call,
    command_result,
    finish,
)
from .wrapper import OutputCallback, OutputStream, marker_tag, new_nonce, watchdog_seconds

__all__ = ["MAX_IDLE", "Session", "SessionPool"]

MAX_IDLE = 4
"""Sessions kept open between commands; more are opened while more commands run at once."""


class Session(Protocol):
    """One exec stream running the loop (:func:`.loop.loop_argv`), as the pool sees it."""

    @property
    def dead(self) -> bool:
        """The stream is over: the loop exited or the connection is gone."""
        ...

    def send(self, data: bytes) -> None:
        """Queue ``data`` for the loop's stdin (written by :meth:`pump`, or at once)."""
        ...

    def pump(self, timeout: float | None) -> Iterable[tuple[int, bytes]]:
        """Write what is queued; the output frames that arrive within ``timeout``."""
        ...

    def failure(self) -> None:
        """Once dead: raise the backend's error if the exec itself failed (the container
        is gone), else return."""
        ...

    def close(self) -> None:
        ...


OpenSession = Callable[[], Session]


class _NotStarted(Exception):
    """The session ended before the loop started the command (internal: the pool retries)."""


def _alive(session: Session) -> bool:
    """Whether ``session`` can take a command. Reads (and drops) what is pending, the last
    command's background output, and writes what is queued (the ack), so a closed stream
    shows."""
    for _ in session.pump(0):
        pass
    return not session.dead


class _CommandFrames:
    """The engine's frame source for one command on a session: frames before the
    command's begin marker (per channel) are dropped; the stream is over when the
    session is."""

    def __init__(self, session: Session, nonce: str) -> None:
        self._session = session
        self._begin = {STDOUT: BeginFilter(nonce), STDERR: BeginFilter(nonce)}

    @property
    def begun(self) -> bool:
        return self._begin[STDOUT].begun

    @property
    def closed(self) -> bool:
        return self._session.dead

    def pump(self, timeout: float | None) -> Iterator[tuple[int, bytes]]:
        for channel, data in self._session.pump(timeout):
            keep = self._begin[channel](data) if channel in self._begin else b""
            if keep:
                yield channel, keep


def _run_in_session(session: Session, argv: Sequence[str], text: str, *,
                    timeout: float | None, stdout: OutputStream, stderr: OutputStream,
                    nonce: str, kill: Kill, started: float) -> tuple[Outcome, bool]:
    """Run one command on ``session`` (streams tagged with ``nonce``'s markers); returns
    how it ended and whether the session may take another command."""
    frames = _CommandFrames(session, nonce)

    def exit_code() -> int | None:
        if stdout.ended and stderr.ended:
            return None  # the end marker has it
        if not frames.begun and session.dead:
            raise _NotStarted
        if session.dead:
            session.failure()
            raise SessionLost(f"the exec session ended while {text!r} ran",
                              command_result(text, -1, stdout, stderr, started))
        raise ExecProtocolError(f"{text!r} is still running")  # only after a timeout

    session.send(encode_request(nonce, watchdog_seconds(timeout), argv))
    engine = ExecSession(frames, stdout, stderr, exit_code, kill=kill, grace=0.0)
    try:
        outcome = engine.run(None if timeout is None else started + timeout)
    except SessionLost:
        raise
    except SandboxError as exc:
        if not session.dead:
            raise
        raise SessionLost(f"the exec session failed while {text!r} ran: {exc}",
                          command_result(text, -1, stdout, stderr, started)) from exc
    reusable = stdout.ended and stderr.ended and not session.dead
    if reusable:
        session.send(ACK)
        _alive(session)  # sends the ack now, not with the next request
    return outcome, reusable


class SessionPool:
    """Exec sessions into one container, lent to one command at a time (module docstring).

    ``open_session`` starts a new one; ``kill(kind, pid)`` kills a command's process group
    from a second exec; ``fallback(argv, **options)`` runs a call as one exec (the keyword
    arguments of :meth:`run`).
    """

    def __init__(self, open_session: OpenSession, kill: Kill,
                 fallback: Callable[..., CommandResult]) -> None:
        self._open = open_session
        self._kill = kill
        self._fallback = fallback
        self._idle: list[Session] = []
        self._lock = threading.Lock()
        self._closed = False
        self.supported = True
        """False once a fresh session could not run the loop: every call is one exec."""

    def run(self, argv: Sequence[str], *, timeout: float | None,
            on_stdout: OutputCallback | None = None, on_stderr: OutputCallback | None = None,
            stdout_sink: IO[bytes] | None = None, output_limit: int,
            command_text: str | None = None) -> CommandResult:
        """Run ``argv`` on a session, as one exec would (same result, same errors)."""
        argv = list(argv)
        check_call(argv, timeout, output_limit)
        text = command_text if command_text is not None else shlex.join(argv)
        started = time.monotonic()
        while self.supported and not self._closed:
            try:
                session, fresh = self._acquire()
            except Exception:  # cannot open one now: this call goes the one-exec way
                break
            nonce = new_nonce()
            stdout = OutputStream(output_limit, on_stdout, stdout_sink, marker_tag(nonce))
            stderr = OutputStream(output_limit, on_stderr, None, marker_tag(nonce))
            try:
                outcome, reusable = _run_in_session(
                    session, argv, text, timeout=timeout, stdout=stdout, stderr=stderr,
                    nonce=nonce, kill=self._kill, started=started)
            except _NotStarted:
                session.close()
                if fresh:
                    self.supported = False
                continue
            except BaseException:
                session.close()
                raise
            self._release(session, reusable)
            return finish(text, outcome, stdout, stderr, started, timeout)
        return self._fallback(argv, timeout=timeout, on_stdout=on_stdout,
                              on_stderr=on_stderr, stdout_sink=stdout_sink,
                              output_limit=output_limit, command_text=text)

    def _acquire(self) -> tuple[Session, bool]:
        """An idle session that is still alive, else a new one (True: fresh)."""
        while True:
            with self._lock:
                session = self._idle.pop() if self._idle else None
            if session is None:
                return self._open(), True
            if _alive(session):
                return session, False
            session.close()

    def _release(self, session: Session, reusable: bool) -> None:
        with self._lock:
            if reusable and not self._closed and len(self._idle) < MAX_IDLE:
                self._idle.append(session)
                return
        session.close()

    def close(self) -> None:
        """Close the idle sessions; those in use close when their command returns."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for session in idle:
            session.close()
