"""One command through Docker's exec API, under the shared wrapper and session engine.

Docker cannot kill an exec'd process either, so the command runs under the wrapper
(:mod:`..wrapper`) and a timeout or Ctrl-C kills its process group from a second exec, as on
Kubernetes; :class:`~sandboxkit.backends.session.ExecSession` does the rest. What is
Docker's own lives here: the output is the daemon's multiplexed stream (8-byte frame
headers: stream type, three zero bytes, big-endian length), stdin ends with a half-close of
the hijacked connection (so the wrapper needs no ``head -c`` bound), and the exit code is the
one ``exec inspect`` reports, never one inferred from the stream. Once both end markers are
in, the session waits :data:`END_WAIT` for the daemon to close the stream, which it does
only once no background child holds the pipes.

With ``exec_session`` on, commands without stdin go through persistent sessions instead
(:mod:`.sessions`, :mod:`..pool`), which read the same stream through :class:`DockerFrames`.

A reader thread does the blocking reads (through the HTTP response's buffer, which may
already hold the first frames) and a writer thread the stdin; the calling thread only waits
on their queue, so a deadline or Ctrl-C is always honoured.
"""

from __future__ import annotations

import contextlib
import queue
import shlex
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

from ...errors import ExecProtocolError, SandboxGone
from ...models import CommandResult
from ..session import ExecSession, command_result, finish
from ..stdin import STDIN_CHUNK, StdinData, StdinSource
from ..wrapper import OutputCallback, OutputStream, kill_argv, marker_tag, new_nonce, wrap_argv
from .client import docker_errors

__all__ = ["END_WAIT", "DockerFrames", "close_hijacked", "exit_code", "hijacked_reader",
           "kill_process_group", "run_exec"]

END_WAIT = 3.0
"""After both end markers, seconds to wait for the daemon to close the stream."""

_FRAMES_PER_PUMP = 64  # frames handed over per pump before control returns to the session


def run_exec(
    api: Any, container: str, argv: Sequence[str], *, stdin: StdinData | None,
    timeout: float | None, on_stdout: OutputCallback | None, on_stderr: OutputCallback | None,
    stdout_sink: IO[bytes] | None, output_limit: int, command_text: str | None,
    explain: Callable[[CommandResult], SandboxGone | None],
) -> CommandResult:
    """Run ``argv`` in ``container`` through ``api`` (a ``docker.APIClient``).

    Raises CommandTimeout once a timeout killed the command. When the daemon fails or the
    stream breaks, ``explain`` gets the output so far and may return the SandboxGone to
    raise instead (the container went away); otherwise the original error propagates.
    """
    text = command_text if command_text is not None else shlex.join(argv)
    nonce = new_nonce()
    tag = marker_tag(nonce)
    stdout = OutputStream(output_limit, on_stdout, stdout_sink, tag)
    stderr = OutputStream(output_limit, on_stderr, None, tag)
    started = time.monotonic()
    source = StdinSource.open(stdin) if stdin is not None else None
    try:
        exec_id = api.exec_create(container, wrap_argv(argv, nonce, timeout=timeout),
                                  stdin=source is not None)["Id"]
        frames = DockerFrames(api.exec_start(exec_id, socket=True), source)
        try:
            session = ExecSession(
                frames, stdout, stderr, lambda: exit_code(api, exec_id),
                kill=lambda kind, pid: kill_process_group(api, container, kind, pid),
                grace=END_WAIT)
            outcome = session.run(None if timeout is None else started + timeout)
        finally:
            frames.close()
    except (docker_errors.APIError, ExecProtocolError, OSError) as exc:
        gone = explain(command_result(text, -1, stdout, stderr, started))
        if gone is None:
            raise
        raise gone from exc
    finally:
        if source is not None:
            source.close()
    return finish(text, outcome, stdout, stderr, started, timeout)


def kill_process_group(api: Any, container: str, kind: str, pid: int) -> None:
    """SIGKILL the command's process group (or tree) from a second exec; errors are
    swallowed, as the timeout or interrupt is what the caller must see."""
    with contextlib.suppress(Exception):
        api.exec_start(api.exec_create(container, kill_argv(kind, pid))["Id"])


def exit_code(api: Any, exec_id: str) -> int | None:
    """The exit code the daemon recorded for the exec, or None while it has none. The
    daemon sets it before closing the stream; a stream abandoned early may precede it."""
    info = api.exec_inspect(exec_id)
    code = info.get("ExitCode")
    if info.get("Running") or code is None:
        return None
    return int(code)


class DockerFrames:
    """The engine's frame source on a hijacked exec connection (see the module docstring).
    A read error ends the stream like an end of file: whether the command finished is then
    for ``exec inspect`` and the end markers to say."""

    def __init__(self, sock: Any, stdin: StdinSource | None) -> None:
        self._sock = sock
        self._raw: socket.socket = getattr(sock, "_sock", sock)
        reader = hijacked_reader(sock)
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue()
        self._eof = False
        threading.Thread(target=self._read, args=(reader,), daemon=True).start()
        if stdin is not None:
            threading.Thread(target=_write_stdin, args=(self._raw, stdin), daemon=True).start()

    @property
    def closed(self) -> bool:
        return self._eof

    def pump(self, timeout: float | None) -> list[tuple[int, bytes]]:
        frames: list[tuple[int, bytes]] = []
        try:
            item = self._queue.get(timeout=timeout)
            while True:
                if item is None:
                    self._eof = True
                    break
                frames.append(item)
                if len(frames) >= _FRAMES_PER_PUMP:
                    break
                item = self._queue.get_nowait()
        except queue.Empty:
            pass
        return frames

    def _read(self, reader: Any) -> None:
        with contextlib.suppress(Exception):  # the socket shut under us, the daemon vanished
            while True:
                header = _read_exactly(reader, 8)
                if header is None:
                    break
                kind, size = struct.unpack(">BxxxL", header)
                payload = _read_exactly(reader, size) if size else b""
                if payload is None:
                    break
                self._queue.put((kind, payload))
        self._queue.put(None)

    def close(self) -> None:
        """Drop the connection; the reader thread then ends."""
        close_hijacked(self._sock)


def hijacked_reader(sock: Any) -> Any:
    """What to read a hijacked exec connection from: the HTTP response's buffered file when
    there is one (it may already hold the stream's first bytes), else the socket."""
    response = getattr(sock, "_response", None)
    return (getattr(getattr(getattr(response, "raw", None), "_fp", None), "fp", None)
            or sock)


def close_hijacked(sock: Any) -> None:
    """Drop a hijacked exec connection, so a thread blocked reading it ends."""
    with contextlib.suppress(OSError):
        getattr(sock, "_sock", sock).shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):
        sock.close()
        response = getattr(sock, "_response", None)
        if response is not None:
            response.close()


def _read_exactly(reader: Any, size: int) -> bytes | None:
    """``size`` bytes, or None at the end of the stream (a partial frame included)."""
    data = reader.read(size)
    while data is not None and len(data) < size:
        more = reader.read(size - len(data))
        if not more:
            return None
        data += more
    return data or None


def _write_stdin(raw: socket.socket, stdin: StdinSource) -> None:
    """Send stdin, then half-close the connection: the daemon closes the command's stdin."""
    with contextlib.suppress(OSError, ValueError):  # ValueError: the call ended, spool closed
        while chunk := stdin.read(STDIN_CHUNK):
            raw.sendall(chunk)
        raw.shutdown(socket.SHUT_WR)
