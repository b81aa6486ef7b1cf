"""Run one command in a pod over the ``pods/exec`` WebSocket, with semantics callers can trust.

Why not ``kubernetes.stream.stream``: its WSClient copies every frame through Python string
buffers (about 1 MB/s and hundreds of MB of memory for large output), loses output at its
deadline, patches ``api_client.request`` while it runs (two threads sharing a client
collide), and leaves the remote process running on timeout. Here the connection is made by
:mod:`.transport`, frames travel through :mod:`.frames`, stdin comes from
:mod:`..stdin`, and one :class:`~sandboxkit.backends.session.ExecSession` decides when the
command is over; this module speaks the channel protocol between them.

Wire protocol
    ``v5.channel.k8s.io`` is offered first, then ``v4.channel.k8s.io``. The exit code comes
    from the Status on the error channel: ``Success`` is 0, ``NonZeroExitCode`` carries
    ``details.causes[reason=ExitCode]``. Any other Failure (the container is gone, the
    runtime could not start the command) raises :class:`ExecError`; a stream that ends with
    neither a Status nor the wrapper's end markers (below) raises ExecProtocolError. No exit
    code is ever invented.

The wrapper (``wrap=True``, the default)
    The user's argv runs under a small POSIX ``sh`` script (:mod:`..wrapper`), passed as
    positional arguments, so no shell text is ever built from user data (nothing needs
    quoting). It exists because the exec API alone cannot do four things sandboxkit promises:

    * Kill on timeout or Ctrl-C. Closing the stream does not stop the process on a real
      cluster (containerd keeps waiting for it), and an exec'd process is not a process group
      leader (runc calls setsid only for a terminal). The wrapper starts the command with
      ``setsid`` (util-linux, busybox and toybox all ship it), so the command and everything
      it spawns form one group, and reports the group id in a start marker. A timeout or an
      interrupt then kills the group from a second exec (``kill -KILL -PGID``). Images without
      ``setsid`` fall back to freezing and killing the command's process tree found through
      ``/proc`` (a child that daemonized out of the tree escapes that fallback). A killed
      command's orphans are reparented to PID 1, which in a sandbox is ``tail`` and never
      reaps them: they stay as zombies (no memory, a pid slot each), as with kubectl.
    * Enforce the timeout inside the pod too: a watchdog (``sleep`` in a subshell with its
      stdio on /dev/null) kills the group after ``ceil(timeout)`` seconds, so the command dies
      even if the client vanished. The client kills at ``timeout`` itself and does not wait
      for the watchdog.
    * Return when the command ends although a background child keeps stdout open. containerd
      streams an exec's output until every writer of its pipes is gone (CRI ``execInternal``
      waits on ``attachDone``; ``drain_exec_sync_io_timeout`` is off by default), so
      ``kubectl exec -- sh -c 'sleep 300 & echo done'`` hangs for 300 s. The wrapper waits for
      its own child only, then writes an end marker with the exit status to stdout and to
      stderr. Both pipes are FIFOs, so everything the command wrote precedes the marker. Once
      both markers are in, the client waits :data:`STATUS_GRACE` seconds for the Status (a
      server sends it right after the wrapper exits when no child holds the pipes) and
      otherwise takes the exit status from the marker, which the wrapper also uses as its own
      exit status. So a background child costs at most STATUS_GRACE on a real cluster (the
      devcluster gives up on held pipes itself after 0.1 s). Output that background children
      write after the marker is dropped, and the children keep running. On a real cluster,
      once this call has closed the stream, a child that keeps writing to the inherited
      stdout may get EPIPE/SIGPIPE; redirect long-lived children (``cmd >log 2>&1 &``).
    * Bound stdin on v4 servers, which cannot signal EOF (:mod:`..stdin`): the wrapper feeds
      the command through ``head -c N``. On v5 the close signal is sent as well.

    Markers are ``\\0sbxk:<128-bit random hex>:<kind><number>\\n``: G/T (start: process group
    id, or pid for the tree fallback; stdout only), X/K (end: exit status; K means the in-pod
    watchdog killed the command). They are removed from the output byte-exactly, including
    when split across frames; the per-call nonce makes a collision with real output
    impossible short of the command reading its wrapper's argv.

    ``wrap=False`` runs argv as is (for images without ``/bin/sh``, or for helpers such as
    the kill itself): then a timeout only closes the stream, and stdin EOF needs v5.

Memory
    At most ``output_limit`` bytes per stream are kept in the result (``truncated`` says so
    beyond it); every byte still reaches ``on_stdout``/``on_stderr`` and the sinks. The
    measured peak for 1 GiB streamed to a callback is the 10 MiB kept plus ~4 MB.

Threads
    A call owns its socket and all of its state, so calls may run in parallel from many
    threads on one ApiClient (only its Configuration is read; ``api_client.request`` is never
    patched). The caches the calls share are :mod:`.transport`'s.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from collections.abc import Iterator, Sequence
from typing import IO, Any

from ...errors import ExecError, ExecProtocolError
from ...models import CommandResult
from ..session import ExecSession, Kill, check_call, finish
from ..stdin import STDIN_CHUNK, StdinData, StdinSource
from ..wrapper import (
    OutputCallback,
    OutputStream,
    TextCallback,
    kill_argv,
    marker_tag,
    new_nonce,
    wrap_argv,
)
from .frames import ERROR, STDIN, FrameChannel
from .transport import handshake

__all__ = [
    "CHANNEL_PROTOCOLS",
    "CONNECT_TIMEOUT",
    "DEFAULT_OUTPUT_LIMIT",
    "STATUS_GRACE",
    "ChannelFrames",
    "OutputCallback",
    "TextCallback",
    "channel_session",
    "kill_process_group",
    "run_exec",
    "status_exit_code",
]

V5_PROTOCOL = "v5.channel.k8s.io"
V4_PROTOCOL = "v4.channel.k8s.io"
CHANNEL_PROTOCOLS = (V5_PROTOCOL, V4_PROTOCOL)
"""Offered in this order; the server picks. Only these two carry a JSON Status."""

DEFAULT_OUTPUT_LIMIT = 10 << 20
"""Bytes of stdout (and, separately, stderr) kept in memory for the result."""

STATUS_GRACE = 0.05
"""Seconds to wait for the server's Status after both end markers arrived. It normally
follows within milliseconds; only a background child holding the pipes delays it."""

CONNECT_TIMEOUT = 30.0
"""Seconds for the TCP connect, TLS and WebSocket handshake."""

_STDIN_HIGH_WATER = 256 << 10  # queued-but-unsent bytes beyond which stdin is not read
_KILL_TIMEOUT = 15.0


# -- public entry points --------------------------------------------------------------------


def run_exec(
    api_client: Any,
    namespace: str,
    pod: str,
    container: str | None,
    argv: Sequence[str],
    *,
    stdin: StdinData | None = None,
    timeout: float | None = None,
    on_stdout: OutputCallback | None = None,
    on_stderr: OutputCallback | None = None,
    stdout_sink: IO[bytes] | None = None,
    stderr_sink: IO[bytes] | None = None,
    output_limit: int = DEFAULT_OUTPUT_LIMIT,
    wrap: bool = True,
    command_text: str | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    protocols: Sequence[str] = CHANNEL_PROTOCOLS,
) -> CommandResult:
    """Run ``argv`` in ``pod``/``container`` and return what it did.

    A non-zero exit is a result. Raises :class:`CommandTimeout` (carrying the output so far)
    after ``timeout`` seconds, once the remote process group is killed; ExecError for a
    server-side failure; PermissionDenied for a refused upgrade (403); SandboxGone when the
    pod does not exist (404); ExecProtocolError when the stream ends without a status. On
    KeyboardInterrupt (or an exception from a callback) the remote process group is killed
    before the exception propagates.

    ``on_stdout``/``on_stderr`` receive every output byte as it arrives (wrap a text
    function in :class:`TextCallback`); ``stdout_sink``/``stderr_sink`` are binary files that
    receive the same bytes. ``command_text`` names the command in the result and in errors
    (default: ``shlex.join(argv)``). ``protocols`` are the channel protocols to offer, in
    order (a subset of :data:`CHANNEL_PROTOCOLS`; tests offer only v4 to exercise the
    fallbacks).
    """
    argv = list(argv)
    check_call(argv, timeout, output_limit)
    protocols = list(protocols)
    if not protocols or not set(protocols) <= set(CHANNEL_PROTOCOLS):
        raise ValueError(f"protocols must be a non-empty subset of {CHANNEL_PROTOCOLS}")
    text = command_text if command_text is not None else shlex.join(argv)
    started = time.monotonic()
    source = StdinSource.open(stdin) if stdin is not None else None
    try:
        nonce = new_nonce() if wrap else ""
        remote_argv = argv
        if wrap:
            remote_argv = wrap_argv(argv, nonce, timeout=timeout,
                                    stdin_length=None if source is None else source.length)
        tag = marker_tag(nonce) if wrap else None
        stdout = OutputStream(output_limit, on_stdout, stdout_sink, tag)
        stderr = OutputStream(output_limit, on_stderr, stderr_sink, tag)
        ws, session_key = handshake(api_client, namespace, pod, container, remote_argv,
                                    stdin=source is not None, timeout=connect_timeout,
                                    protocols=protocols)
        channel = FrameChannel(ws, session_key)

        def kill(kind: str, pid: int) -> None:
            kill_process_group(api_client, namespace, pod, container, kind, pid)

        session = channel_session(channel, stdout, stderr, source, kill if wrap else None)
        try:
            outcome = session.run(None if timeout is None else started + timeout)
        finally:
            channel.close()
    finally:
        if source is not None:
            source.close()
    return finish(text, outcome, stdout, stderr, started, timeout)


def kill_process_group(
    api_client: Any, namespace: str, pod: str, container: str | None, kind: str, pid: int,
) -> None:
    """SIGKILL what a wrapped command started, from a second exec.

    ``kind`` is the start marker's: ``G`` for a process group, ``T`` for a process tree.
    Failures are swallowed: this runs on the way out of a timeout or an interrupt, where the
    original condition is what the caller must see.
    """
    if kind not in ("G", "T") or pid <= 1:
        return
    with contextlib.suppress(Exception):
        run_exec(api_client, namespace, pod, container,
                 kill_argv(kind, pid),
                 wrap=False, timeout=_KILL_TIMEOUT, output_limit=4096,
                 connect_timeout=_KILL_TIMEOUT)


# -- the channel protocol -------------------------------------------------------------------


def channel_session(channel: FrameChannel, stdout: OutputStream, stderr: OutputStream,
                    stdin: StdinSource | None, kill: Kill | None) -> ExecSession:
    """The session engine over one channel-protocol stream: the Status is its exit code,
    the stream is over once the Status arrived, and :data:`STATUS_GRACE` is its grace."""
    frames = ChannelFrames(channel, stdin)
    return ExecSession(frames, stdout, stderr, frames.exit_code, kill=kill,
                       grace=STATUS_GRACE)


class ChannelFrames:
    """The engine's frame source on a :class:`FrameChannel`: stdin goes out as the socket
    takes it, stdout and stderr come in, the error channel is collected into the Status."""

    def __init__(self, channel: FrameChannel, stdin: StdinSource | None) -> None:
        self._channel = channel
        self._stdin = stdin
        self._error = bytearray()
        self.status: dict[str, Any] | None = None

    @property
    def closed(self) -> bool:
        return self.status is not None or self._channel.peer_closed

    def pump(self, timeout: float | None) -> Iterator[tuple[int, bytes]]:
        self._feed_stdin()
        for channel, data in self._channel.pump(timeout):
            if channel == ERROR:
                self._error += data
                with contextlib.suppress(ValueError):
                    status = json.loads(self._error)
                    if isinstance(status, dict):
                        self.status = status
            else:
                yield channel, data

    def _feed_stdin(self) -> None:
        """Queue stdin up to a high-water mark: the channel writes only what the socket
        accepts, so a command that is not reading cannot stop us from reading its output."""
        source = self._stdin
        if source is None:
            return
        while self._channel.backlog < _STDIN_HIGH_WATER:
            chunk = source.read(STDIN_CHUNK)
            if not chunk:
                if self._channel.protocol == V5_PROTOCOL:
                    self._channel.send_close_signal(STDIN)
                self._stdin = None
                return
            self._channel.send(STDIN, chunk)

    def exit_code(self) -> int | None:
        return None if self.status is None else status_exit_code(self.status)


def status_exit_code(status: dict[str, Any]) -> int:
    """The exit code a v4/v5 Status reports; ExecError for any other failure."""
    state = status.get("status")
    if state == "Success":
        return 0
    if state == "Failure":
        if status.get("reason") == "NonZeroExitCode":
            causes = (status.get("details") or {}).get("causes") or []
            for cause in causes:
                if isinstance(cause, dict) and cause.get("reason") == "ExitCode":
                    with contextlib.suppress(TypeError, ValueError):
                        return int(cause.get("message", ""))
            raise ExecProtocolError(f"NonZeroExitCode without a readable exit code: {status}")
        raise ExecError(str(status.get("message") or status), reason=str(status.get("reason", "")),
                        code=status.get("code"), status=status)
    raise ExecProtocolError(f"unreadable exec status: {status!r}")
