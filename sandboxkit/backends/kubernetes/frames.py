"""WebSocket framing for the exec stream, on the handshaken socket, without unbounded buffers.

Every binary frame of the channel protocol starts with a channel byte: 0 stdin, 1 stdout,
2 stderr, 3 error (a JSON ``metav1.Status``). v5 adds the close signal ``[255, 0]``, which
gives the remote stdin its EOF. :class:`FrameChannel` writes client frames (masked, as RFC
6455 requires) and parses server frames (fragments, pings, close) straight from the socket:
websocket-client's own reader copies every frame through Python buffers (about 1 MB/s for
large output). Reading holds about a megabyte (:data:`_READ_BUDGET`) plus at most one partial
frame.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import ssl
from typing import Any

import websocket

from .transport import remember_tls_session

__all__ = ["ERROR", "RESIZE", "STDIN", "FrameChannel"]

STDIN, ERROR, RESIZE = 0, 3, 4
"""The channels besides stdout and stderr (1 and 2, :mod:`..session`); resize carries a
terminal's size as JSON ``{"Width": W, "Height": H}``."""
_CLOSE_SIGNAL = 255
_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

_READ_SIZE = 256 << 10
_READ_BUDGET = 1 << 20  # bytes read per pump before control returns to the loop
_SEND_SLICE = 64 << 10


def _frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (RFC 6455 requires clients to mask)."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    return head + mask + websocket.ABNF.mask(mask, payload)


_WOULD_BLOCK = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError)


class FrameChannel:
    """Frame I/O on the handshaken socket, non-blocking, driven by ``select``.

    One thread reads and writes, so TLS never sees concurrent use; stdin is written only
    when the socket accepts it, so a command that is not reading its input cannot stop us
    from reading its output (which would deadlock both sides).
    """

    def __init__(self, ws: websocket.WebSocket,
                 session_key: tuple[Any, ...] | None = None) -> None:
        self._ws = ws
        self._session_key = session_key
        self.protocol: str = ws.getsubprotocol() or ""
        sock = ws.sock
        assert sock is not None
        self._sock: socket.socket = sock
        self._tls: ssl.SSLSocket | None = sock if isinstance(sock, ssl.SSLSocket) else None
        sock.setblocking(False)
        self._rbuf = bytearray()
        self._out = bytearray()
        self._inflight: bytes | None = None  # a TLS retry must resend identical bytes
        self._fragment_channel: int | None = None
        self.peer_closed = False

    def fileno(self) -> int:
        """The socket's descriptor, so a caller can wait on it beside others (a terminal)."""
        return self._sock.fileno()

    @property
    def pending(self) -> bool:
        """TLS holds decrypted bytes the socket's descriptor no longer signals."""
        return self._tls is not None and self._tls.pending() > 0

    @property
    def backlog(self) -> int:
        return len(self._out) + len(self._inflight or b"")

    def send(self, channel: int, data: bytes) -> None:
        self._out += _frame(_OP_BINARY, bytes((channel,)) + data)

    def send_close_signal(self, channel: int) -> None:
        """v5 only: half-close ``channel`` (stdin), so the remote reads EOF."""
        self._out += _frame(_OP_BINARY, bytes((_CLOSE_SIGNAL, channel)))

    def pump(self, timeout: float | None) -> list[tuple[int, bytes]]:
        """Wait up to ``timeout`` for the socket; write what it takes, return the
        ``(channel, data)`` messages that arrived."""
        if self.peer_closed:
            return []
        if not (self._tls is not None and self._tls.pending()):
            wants = [self._sock] if self.backlog else []
            readable, writable, _ = select.select([self._sock], wants, [], timeout)
            if writable:
                self._flush()
            if not readable:
                return []
        return self._read()

    def _flush(self) -> None:
        while True:
            if self._inflight is None:
                if not self._out:
                    return
                self._inflight = bytes(self._out[:_SEND_SLICE])
                del self._out[:_SEND_SLICE]
            try:
                sent = self._sock.send(self._inflight)
            except _WOULD_BLOCK:
                return
            except OSError:  # the peer is gone; reading will tell how the stream ended
                self._out.clear()
                self._inflight = None
                return
            self._inflight = self._inflight[sent:] or None

    def _read(self) -> list[tuple[int, bytes]]:
        budget = _READ_BUDGET
        while budget > 0:
            try:
                chunk = self._sock.recv(_READ_SIZE)
            except _WOULD_BLOCK:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.peer_closed = True
                break
            self._rbuf += chunk
            budget -= len(chunk)
        return self._parse()

    def _parse(self) -> list[tuple[int, bytes]]:
        messages: list[tuple[int, bytes]] = []
        buf = self._rbuf
        pos, size = 0, len(buf)
        while size - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            length, header = second & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, header = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, header = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            masked = second & 0x80
            if masked:
                header += 4
            end = pos + header + length
            if end > size:
                break
            start = pos + header
            if masked:
                payload = websocket.ABNF.mask(bytes(buf[start - 4:start]), bytes(buf[start:end]))
            else:
                payload = bytes(buf[start:end])
            pos = end
            self._handle(first & 0x0F, bool(first & 0x80), payload, messages)
        del buf[:pos]
        return messages

    def _handle(self, opcode: int, fin: bool, payload: bytes,
                messages: list[tuple[int, bytes]]) -> None:
        if opcode in (_OP_BINARY, _OP_TEXT):
            if not payload:
                return
            channel, data = payload[0], payload[1:]
            self._fragment_channel = None if fin else channel
            if data:
                messages.append((channel, data))
        elif opcode == _OP_CONT:
            if self._fragment_channel is not None and payload:
                messages.append((self._fragment_channel, payload))
            if fin:
                self._fragment_channel = None
        elif opcode == _OP_PING:
            self._out += _frame(_OP_PONG, payload)
        elif opcode == _OP_CLOSE:
            self.peer_closed = True

    def close(self) -> None:
        """Send (or answer with) a close frame if the socket takes it at once, then drop the
        connection. Nothing waits for the peer's close: the outcome is already known."""
        with contextlib.suppress(Exception):
            self._out.clear()
            self._inflight = None
            self._out += _frame(_OP_CLOSE, (1000).to_bytes(2, "big"))
            self._flush()
        if self._session_key is not None and self._tls is not None:
            with contextlib.suppress(Exception):
                remember_tls_session(self._session_key, self._tls)
        with contextlib.suppress(Exception):
            self._ws.shutdown()

