"""Persistent exec sessions on Kubernetes: the :mod:`..pool` over ``pods/exec`` streams.

A session is one exec with stdin running the loop (:func:`..loop.loop_argv`), framed by
:class:`.frames.FrameChannel` and read through :class:`.exec.ChannelFrames`, so its error
channel is collected into a Status as for any exec. The Status arrives only when the loop
has exited; a Failure there (the container is gone) raises ExecError.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any

from ...models import CommandResult
from ..loop import loop_argv
from ..session_pool import SessionPool
from ..wrapper import new_nonce
from .exec import (
    CHANNEL_PROTOCOLS,
    CONNECT_TIMEOUT,
    ChannelFrames,
    kill_process_group,
    run_exec,
    status_exit_code,
)
from .frames import STDIN, FrameChannel
from .transport import handshake

__all__ = ["open_session", "session_pool"]


class _ChannelSession:
    """One exec stream running the loop (a :class:`..pool.Session`)."""

    def __init__(self, channel: FrameChannel) -> None:
        self._channel = channel
        self._frames = ChannelFrames(channel, None)

    @property
    def dead(self) -> bool:
        return self._frames.closed

    def send(self, data: bytes) -> None:
        self._channel.send(STDIN, data)

    def pump(self, timeout: float | None) -> Iterator[tuple[int, bytes]]:
        return self._frames.pump(timeout)

    def failure(self) -> None:
        if self._frames.status is not None:
            status_exit_code(self._frames.status)  # ExecError for a Failure

    def close(self) -> None:
        self._channel.close()


def open_session(api_client: Any, namespace: str, pod: str,
                 container: str | None) -> _ChannelSession:
    """Start the loop in ``pod``/``container``. The first request can follow at once: the
    loop reads it once it has checked its tools."""
    ws, session_key = handshake(api_client, namespace, pod, container,
                                loop_argv(new_nonce()), stdin=True,
                                timeout=CONNECT_TIMEOUT, protocols=CHANNEL_PROTOCOLS)
    return _ChannelSession(FrameChannel(ws, session_key))


def session_pool(api_client: Any, namespace: str, pod: str,
                 container: str | None) -> SessionPool:
    """A pool of sessions into ``pod``/``container``, killing through a second exec and
    falling back to :func:`.exec.run_exec`."""

    def kill(kind: str, pid: int) -> None:
        kill_process_group(api_client, namespace, pod, container, kind, pid)

    def fallback(argv: Sequence[str], **options: Any) -> CommandResult:
        return run_exec(api_client, namespace, pod, container, argv, **options)

    return SessionPool(functools.partial(open_session, api_client, namespace, pod, container),
                       kill, fallback)
