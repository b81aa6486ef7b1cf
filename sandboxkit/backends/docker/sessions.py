"""Persistent exec sessions on Docker: the :mod:`..pool` over hijacked exec connections.

A session is one exec with stdin running the loop (:func:`..loop.loop_argv`); its output is
the daemon's multiplexed stream, read by :class:`.exec.DockerFrames`' reader thread, and
requests are written straight to the connection (they are small, and the loop reads them
as they come). The daemon reports no failure of its own on the stream: when a session ends
under a command, the sandbox asks the daemon whether the container is gone.
"""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import Callable, Iterable
from typing import Any

from ...errors import SandboxGone
from ...models import CommandResult
from ..loop import loop_argv
from ..session_pool import SessionPool
from ..wrapper import new_nonce
from .exec import DockerFrames, kill_process_group, run_exec

__all__ = ["open_session", "session_pool"]


class _DockerSession:
    """One exec connection running the loop (a :class:`..pool.Session`)."""

    def __init__(self, sock: Any) -> None:
        self._frames = DockerFrames(sock, None)
        self._raw: socket.socket = getattr(sock, "_sock", sock)

    @property
    def dead(self) -> bool:
        return self._frames.closed

    def send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # the peer is gone: reading will tell
            self._raw.sendall(data)

    def pump(self, timeout: float | None) -> Iterable[tuple[int, bytes]]:
        return self._frames.pump(timeout)

    def failure(self) -> None:
        return None  # the stream carries none; the sandbox asks the daemon

    def close(self) -> None:
        self._frames.close()


def open_session(api: Any, container: str) -> _DockerSession:
    """Start the loop in ``container`` through ``api`` (a ``docker.APIClient``)."""
    exec_id = api.exec_create(container, loop_argv(new_nonce()), stdin=True)["Id"]
    return _DockerSession(api.exec_start(exec_id, socket=True))


def session_pool(api: Any, container: str,
                 explain: Callable[[CommandResult], SandboxGone | None]) -> SessionPool:
    """A pool of sessions into ``container``, killing through a second exec and falling
    back to :func:`.exec.run_exec` (which hands ``explain`` a failed call's output)."""
    return SessionPool(functools.partial(open_session, api, container),
                       functools.partial(kill_process_group, api, container),
                       functools.partial(run_exec, api, container, stdin=None,
                                         explain=explain))
