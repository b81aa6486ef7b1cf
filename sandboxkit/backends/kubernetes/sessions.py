"""Persistent exec sessions: many commands through one long-lived ``pods/exec`` stream.

A one-exec call (:func:`.exec.run_exec`) pays a WebSocket handshake, the API server's proxy
hop and a runtime exec per command. A :class:`SessionPool` keeps exec streams open to the
in-pod loop of :mod:`..loop` and sends each command there as a request; the same
:class:`~sandboxkit.backends.session.ExecSession` engine reads its output, strips its
markers and kills it on timeout or interrupt (a second exec, as for a one-exec call).

Threads
    A session runs one command at a time. The pool hands each call an idle session, or
    opens a new one when every session is busy, so commands from several threads run
    concurrently, one session each; at most :data:`MAX_IDLE` stay open between commands.

Failures
    * A session found dead before use (the pod restarted, the connection dropped, the
      kubelet closed an idle stream) is discarded and another taken, transparently.
    * A session that ends before the command's begin marker never ran the command: the
      call moves to a fresh session, or, when even a fresh one cannot run the loop (no
      ``/bin/sh``, no ``mkfifo``: :data:`~..loop.UNSUPPORTED`), to one exec per command,
      for good (:attr:`SessionPool.supported`).
    * A session that ends while the command runs raises :class:`SessionLost` (an
      ExecProtocolError carrying the output so far, exit code -1: never an invented one);
      the sandbox turns it into SandboxGone when the pod is gone.
    * After a timeout or an interrupt whose kill left the end markers unread, the session's
      state is unknown and it is closed rather than reused.

Calls with stdin use one exec each (:func:`.exec.run_exec`): the loop's stdin carries the
requests, and a command must never read it.
"""

from __future__ import annotations

import functools
import shlex
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

from ...errors import ExecError, ExecProtocolError
from ...models import CommandResult
from ..loop import ACK, BeginFilter, encode_request, loop_argv
from ..session import STDERR, STDOUT, ExecSession, Kill, Outcome, command_result, finish
from ..wrapper import OutputCallback, OutputStream, marker_tag, new_nonce, watchdog_seconds
from .exec import (
    CHANNEL_PROTOCOLS,
    CONNECT_TIMEOUT,
    DEFAULT_OUTPUT_LIMIT,
    ChannelFrames,
    check_call,
    kill_process_group,
    run_exec,
    status_exit_code,
)
from .frames import STDIN, FrameChannel
from .transport import handshake

__all__ = ["MAX_IDLE", "SessionLost", "SessionPool", "open_session"]

MAX_IDLE = 4
"""Sessions kept open between commands; more are opened while more commands run at once."""

OpenSession = Callable[[], "_Session"]
"""Opens a new session into the pool's container (:func:`open_session`, bound)."""


class SessionLost(ExecProtocolError):
    """The exec session ended while the command ran: its exit code is unknown; ``result``
    holds the output so far (exit code -1)."""

    def __init__(self, message: str, result: CommandResult) -> None:
        super().__init__(message)
        self.result = result


class _NotStarted(Exception):
    """The session ended before the loop started the command (internal: the pool retries)."""


class _Session:
    """One exec stream running the loop. Not thread-safe: the pool lends it to one call."""

    def __init__(self, channel: FrameChannel) -> None:
        self._channel = channel
        self._frames = ChannelFrames(channel, None)

    @property
    def dead(self) -> bool:
        return self._frames.closed

    @property
    def status(self) -> dict[str, Any] | None:
        """The loop's own Status: it arrives only once the loop has exited."""
        return self._frames.status

    def send(self, data: bytes) -> None:
        self._channel.send(STDIN, data)

    def pump(self, timeout: float | None) -> Iterator[tuple[int, bytes]]:
        """The output frames that arrive within ``timeout`` (the Status is collected)."""
        return self._frames.pump(timeout)

    def alive(self) -> bool:
        """Whether the session can take a command. Reads (and drops) what is pending, the
        last command's background output, and writes what is queued (the ack), so a
        closed stream shows."""
        for _ in self.pump(0):
            pass
        return not self.dead

    def close(self) -> None:
        self._channel.close()


def open_session(api_client: Any, namespace: str, pod: str,
                 container: str | None) -> _Session:
    """Start the loop in ``pod``/``container``. The first request can follow at once: the
    loop reads it once it has checked its tools."""
    ws, session_key = handshake(api_client, namespace, pod, container,
                                loop_argv(new_nonce()), stdin=True,
                                timeout=CONNECT_TIMEOUT, protocols=CHANNEL_PROTOCOLS)
    return _Session(FrameChannel(ws, session_key))


class _CommandFrames:
    """The engine's frame source for one command on a session: frames before the
    command's begin marker (per channel) are dropped; the stream is over when the
    session is."""

    def __init__(self, session: _Session, nonce: str) -> None:
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


def _run_in_session(session: _Session, argv: Sequence[str], text: str, *,
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
        if session.status is not None:
            status_exit_code(session.status)  # ExecError when the container is gone
        if session.dead:
            raise SessionLost(f"the exec session ended while {text!r} ran",
                              command_result(text, -1, stdout, stderr, started))
        raise ExecProtocolError(f"{text!r} is still running")  # only after a timeout

    session.send(encode_request(nonce, watchdog_seconds(timeout), argv))
    engine = ExecSession(frames, stdout, stderr, exit_code, kill=kill, grace=0.0)
    try:
        outcome = engine.run(None if timeout is None else started + timeout)
    except ExecError as exc:
        raise SessionLost(f"the exec session failed while {text!r} ran: {exc}",
                          command_result(text, -1, stdout, stderr, started)) from exc
    reusable = stdout.ended and stderr.ended and not session.dead
    if reusable:
        session.send(ACK)
        session.alive()  # sends the ack now, not with the next request
    return outcome, reusable


class SessionPool:
    """Exec sessions into one container, lent to one command at a time (module docstring).

    ``fallback`` runs a call as one exec (same keyword arguments as :meth:`run`).
    """

    def __init__(self, open_session: OpenSession, kill: Kill,
                 fallback: Callable[..., CommandResult]) -> None:
        self._open = open_session
        self._kill = kill
        self._fallback = fallback
        self._idle: list[_Session] = []
        self._lock = threading.Lock()
        self._closed = False
        self.supported = True
        """False once a fresh session could not run the loop: every call is one exec."""

    @classmethod
    def into(cls, api_client: Any, namespace: str, pod: str,
             container: str | None) -> SessionPool:
        """A pool of sessions into ``pod``/``container``, killing through a second exec
        and falling back to :func:`.exec.run_exec`."""

        def kill(kind: str, pid: int) -> None:
            kill_process_group(api_client, namespace, pod, container, kind, pid)

        def fallback(argv: Sequence[str], **options: Any) -> CommandResult:
            return run_exec(api_client, namespace, pod, container, argv, **options)

        return cls(functools.partial(open_session, api_client, namespace, pod, container),
                   kill, fallback)

    def run(self, argv: Sequence[str], *, timeout: float | None = None,
            on_stdout: OutputCallback | None = None, on_stderr: OutputCallback | None = None,
            stdout_sink: IO[bytes] | None = None,
            output_limit: int = DEFAULT_OUTPUT_LIMIT,
            command_text: str | None = None) -> CommandResult:
        """Run ``argv`` on a session, as :func:`.exec.run_exec` would with one exec."""
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

    def _acquire(self) -> tuple[_Session, bool]:
        """An idle session that is still alive, else a new one (True: fresh)."""
        while True:
            with self._lock:
                session = self._idle.pop() if self._idle else None
            if session is None:
                return self._open(), True
            if session.alive():
                return session, False
            session.close()

    def _release(self, session: _Session, reusable: bool) -> None:
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
