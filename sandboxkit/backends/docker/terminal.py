"""``docker exec -it``: a command with a terminal in a sandbox container.

With a terminal the daemon sends the output as it is, without the 8-byte frame headers of
:mod:`.exec`, and the window size is set with ``exec resize``. The hijacked connection may
keep bytes in the HTTP response's buffer, where ``select`` on the socket cannot see them,
so a thread copies the stream into a pipe the relay waits on.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

from ...errors import ExecProtocolError
from ..terminal import FdOutput
from .client import docker_errors
from .exec import close_hijacked, exit_code, hijacked_reader

__all__ = ["DockerTerminal"]

_EXIT_WAIT = 3.0  # seconds for the daemon to record the exit code after the stream ended


class DockerTerminal(FdOutput):
    """A :class:`sandboxkit.backends.terminal.TerminalStream` on a tty exec."""

    def __init__(self, api: Any, container: str, argv: Sequence[str]) -> None:
        self._api = api
        self._id: str = api.exec_create(container, list(argv), stdin=True, tty=True)["Id"]
        self._sock = api.exec_start(self._id, socket=True, tty=True)
        self._raw: socket.socket = getattr(self._sock, "_sock", self._sock)
        output, sink = os.pipe()
        super().__init__(output)
        threading.Thread(target=_copy, args=(hijacked_reader(self._sock), sink),
                         daemon=True).start()

    def write(self, data: bytes) -> None:
        self._raw.sendall(data)

    def close_input(self) -> None:
        with contextlib.suppress(OSError):
            self._raw.shutdown(socket.SHUT_WR)  # the daemon closes the command's stdin

    def resize(self, columns: int, rows: int) -> None:
        with contextlib.suppress(docker_errors.APIError):  # the exec may have just ended
            self._api.exec_resize(self._id, height=rows, width=columns)

    def exit_code(self) -> int:
        deadline = time.monotonic() + _EXIT_WAIT
        while (code := exit_code(self._api, self._id)) is None:
            if time.monotonic() > deadline:
                raise ExecProtocolError("the terminal's exec ended without an exit code")
            time.sleep(0.02)
        return code

    def close(self) -> None:
        close_hijacked(self._sock)
        self._close_output()


def _copy(reader: Any, sink: int) -> None:
    """Copy the stream into the pipe until it ends, then close the pipe (the relay's EOF)."""
    read = getattr(reader, "read1", None) or getattr(reader, "recv", None) or reader.read
    try:
        with contextlib.suppress(Exception):  # the connection was dropped: that is the end
            while data := read(64 << 10):
                os.write(sink, data)
    finally:
        os.close(sink)
