"""``kubectl exec -it`` over the pods/exec WebSocket: a command with a terminal.

The same connection (:func:`.transport.handshake` with ``tty=True``) and framing
(:class:`.frames.FrameChannel`) as every other exec, and the same reading of the Status
(:class:`.exec.ChannelFrames`); what differs is that a terminal merges stderr into stdout
and that the window size travels on the resize channel (4) as JSON, which the kubelet
applies to the container's terminal.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...errors import ExecProtocolError
from .exec import CHANNEL_PROTOCOLS, CONNECT_TIMEOUT, V5_PROTOCOL, ChannelFrames
from .frames import RESIZE, STDIN, FrameChannel
from .transport import handshake

__all__ = ["ChannelTerminal", "open_terminal", "resize_message"]


def resize_message(columns: int, rows: int) -> bytes:
    """The resize channel's payload: client-go's ``TerminalSize`` as JSON."""
    return json.dumps({"Width": int(columns), "Height": int(rows)},
                      separators=(",", ":")).encode()


class ChannelTerminal:
    """A :class:`sandboxkit.backends.terminal.TerminalStream` on a tty exec's channel stream."""

    def __init__(self, channel: FrameChannel) -> None:
        self._channel = channel
        self._frames = ChannelFrames(channel, None)

    def fileno(self) -> int:
        return self._channel.fileno()

    @property
    def busy(self) -> bool:
        # Closed: the Status (and the close frame) may have come with the last output, and
        # the socket will signal nothing more, so the next read must not wait for it.
        return self._channel.backlog > 0 or self._channel.pending or self._frames.closed

    def read(self) -> bytes | None:
        output = b"".join(data for _, data in self._frames.pump(0))
        if output:
            return output
        return None if self._frames.closed else b""

    def write(self, data: bytes) -> None:
        self._channel.send(STDIN, data)

    def close_input(self) -> None:
        if self._channel.protocol == V5_PROTOCOL:  # v4 cannot signal EOF
            self._channel.send_close_signal(STDIN)

    def resize(self, columns: int, rows: int) -> None:
        self._channel.send(RESIZE, resize_message(columns, rows))

    def exit_code(self) -> int:
        code = self._frames.exit_code()
        if code is None:
            raise ExecProtocolError("the terminal's exec stream ended without an exit status")
        return code

    def close(self) -> None:
        self._channel.close()


def open_terminal(api_client: Any, namespace: str, pod: str, container: str | None,
                  argv: Sequence[str]) -> ChannelTerminal:
    """Start ``argv`` with a terminal and stdin in ``pod``/``container``."""
    ws, session_key = handshake(api_client, namespace, pod, container, list(argv),
                                stdin=True, tty=True, timeout=CONNECT_TIMEOUT,
                                protocols=CHANNEL_PROTOCOLS)
    return ChannelTerminal(FrameChannel(ws, session_key))
