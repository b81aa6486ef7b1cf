"""``pods/exec`` and ``pods/attach`` streams over WebSocket, as a kube-apiserver serves them.

A real cluster answers these requests in two places, and this module reproduces both,
because clients pick their code path from what the server negotiates:

* a WebSocket asking for ``v5.channel.k8s.io`` is served by the API server's stream
  translator, which supports only v5 (whatever else the client listed);
* any other WebSocket is proxied to the kubelet, which accepts ``channel.k8s.io``,
  ``base64.channel.k8s.io``, ``v4.channel.k8s.io``, ``v4.base64.channel.k8s.io`` and no
  subprotocol at all, choosing the first the client listed; anything else gets a bare
  ``403 Forbidden`` (``golang.org/x/net/websocket`` refusing the handshake).

Frames carry one leading channel byte: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize (the
base64 protocols use the ASCII digit and base64-encode the rest, in text frames). Resize
frames carry JSON ``{"Width": W, "Height": H}``, applied to the exec's terminal when it has
one (``tty=true``, which also merges stderr into stdout). v5
adds the client's half-close ``[255, 0]``, which closes the process's stdin. Clients of v4
and older cannot signal end of input: a command reading stdin to EOF only ends when it
exits on its own or the client disconnects, so callers needing EOF must use v5 (or a
fallback of their own, such as a sentinel the command understands).

The error channel reports the outcome. v4 and v5 send a JSON ``metav1.Status``; the older
protocols send only a failure's message, as plain text. Exit-code messages differ between
the two serving paths exactly as they do in a real cluster: the kubelet wraps the
container runtime's ``error executing command [sh -c exit 3], exit code 3``, while the v5
translator wraps client-go's re-decoded ``command terminated with exit code 3``.

Ending a session. The process is supervised, not its pipes: once the exec'd process has
exited, each output stream is read until EOF, or until no data has arrived on it for
:data:`EXIT_GRACE` seconds, or until :data:`POST_EXIT_BUDGET` bytes arrived after the exit.
So everything the process wrote before exiting is delivered (it is in the pipe and is read
without waiting), while a background child that inherited the pipes (``sleep 30 &``) cannot
hold the session open; ``kubectl exec`` against a real cluster hangs there. Such children
keep running, as they do in a container. If instead the client goes away before the
process exits, the whole process group is killed: that is how a client timeout or Ctrl-C
stops a remote command.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
import secrets
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import WSMsgType, hdrs, web
from multidict import MultiMapping

from .errors import ApiError, bad_request

__all__ = [
    "EXIT_GRACE",
    "POST_EXIT_BUDGET",
    "ExecOptions",
    "Spawn",
    "parse_exec_options",
    "serve_exec",
]

class Spawned(Protocol):
    """What a spawn returns: an asyncio process, or the runtime's ExecProcess."""

    pid: int
    stdin: asyncio.StreamWriter | None
    stdout: asyncio.StreamReader | None
    stderr: asyncio.StreamReader | None

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...


Spawn = Callable[[list[str], bool], Awaitable[Spawned]]
"""Starts ``argv`` (with a terminal if the flag is set) in a new session, so its pid is its
process group id, with ``stdin``/``stdout`` streams and ``stderr`` either a stream or None
(a terminal merges it into stdout). Raising means the command could not be started: an
:class:`ApiError` is sent on the error channel as it is (the stream was refused, say because
the container is not running); for any other exception ``str()`` is reported as the
runtime's reason (runc's wording)."""

EXIT_GRACE = 0.1
"""Seconds an output stream may stay silent after the process exited before it counts as
finished although still open (a background child holds it)."""

POST_EXIT_BUDGET = 2 << 20
"""Bytes read from one stream after the process exited before it counts as finished. More
than a pipe and its reader's buffer can hold (Linux caps pipes at 1 MiB by default), so
only output from a background child that keeps writing is cut off."""

_CHUNK = 64 << 10
_MAX_MESSAGE = 32 << 20  # golang.org/x/net/websocket's DefaultMaxPayloadBytes
_CLOSE_TIMEOUT = 60.0  # how long to wait for the client to answer our close frame
_EXIT_POLL = 0.02
_PROBE_INTERVAL = 1.0  # how often a client is pinged while stdin backpressure blinds us

_STDIN, _STDOUT, _STDERR, _ERROR, _RESIZE = range(5)
_CLOSE_SIGNAL = 255

_V5 = "v5.channel.k8s.io"
_V4 = "v4.channel.k8s.io"
_V4_BASE64 = "v4.base64.channel.k8s.io"
_V1 = "channel.k8s.io"
_V1_BASE64 = "base64.channel.k8s.io"
_KUBELET_PROTOCOLS = ("", _V1, _V1_BASE64, _V4, _V4_BASE64)
_BASE64_PROTOCOLS = (_V1_BASE64, _V4_BASE64)
_JSON_STATUS_PROTOCOLS = (_V5, _V4, _V4_BASE64)

_FALSE = ("0", "false")


@dataclass(frozen=True)
class ExecOptions:
    """``PodExecOptions`` after the kubelet's normalisation (a terminal has no stderr)."""

    command: tuple[str, ...]
    container: str
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


def _flag(query: MultiMapping[str], name: str) -> bool:
    """A boolean query parameter as the API server converts it: absent, ``0`` and
    ``false`` (any case) are false, anything else, even an empty value, is true."""
    value = query.get(name)
    return value is not None and value.lower() not in _FALSE


def parse_exec_options(query: MultiMapping[str], *, attach: bool = False) -> ExecOptions:
    """Read ``command`` (repeated), ``container``, ``stdin``, ``stdout``, ``stderr``, ``tty``.

    Raises ApiError 400 when no stream is requested (the kubelet's check, run after it
    drops stderr for a terminal) or, for exec, when no command is given. Attach runs no
    command, so ``attach=True`` skips that check.
    """
    tty = _flag(query, "tty")
    stdin, stdout = _flag(query, "stdin"), _flag(query, "stdout")
    stderr = _flag(query, "stderr") and not tty
    if not (stdin or stdout or stderr):
        raise bad_request("you must specify at least 1 of stdin, stdout, stderr")
    command = tuple(query.getall("command", ()))
    if not command and not attach:
        raise bad_request("you must specify at least one command for the container")
    return ExecOptions(command, query.get("container", ""), stdin, stdout, stderr, tty)


# -- wire details ---------------------------------------------------------------------------


def _go_json(value: Any) -> bytes:
    """``encoding/json`` output: compact, UTF-8, with ``<``, ``>``, ``&``, U+2028 and U+2029
    escaped (they can only occur inside strings, so replacing them textually is safe)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text.encode()


def _go_list(items: Sequence[str]) -> str:
    """A string slice formatted with Go's ``%v``."""
    return "[" + " ".join(items) + "]"


def _internal_error(message: str) -> dict[str, Any]:
    """``apierrors.NewInternalError`` as the error channel carries it."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: {message}",
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    }


def _exit_status(argv: Sequence[str], returncode: int, protocol: str) -> dict[str, Any]:
    if returncode == 0:
        return {"metadata": {}, "status": "Success"}
    # The runtime reports a signalled process as a shell would: 128 + signal number.
    code = returncode if returncode > 0 else 128 - returncode
    if protocol == _V5:
        detail = f"command terminated with exit code {code}"
    else:
        detail = f"error executing command {_go_list(argv)}, exit code {code}"
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: {detail}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def _channel_status(error: ApiError) -> dict[str, Any]:
    """An API error as the error channel carries it: a Status without type metadata."""
    status = error.status()
    status.pop("kind", None)
    status.pop("apiVersion", None)
    return status


def _start_failure_status(reason: str, protocol: str) -> dict[str, Any]:
    """What containerd and runc report through the kubelet when the exec cannot start; the
    v5 translator wraps the kubelet's message in a second InternalError."""
    status = _internal_error(
        "error executing command in container: failed to exec in container: "
        f'failed to start exec "{secrets.token_hex(32)}": OCI runtime exec failed: '
        f"exec failed: unable to start container process: {reason}: unknown"
    )
    return _internal_error(status["message"]) if protocol == _V5 else status


def _negotiate(header: str) -> str | None:
    """The subprotocol a real cluster would pick from ``Sec-WebSocket-Protocol``; "" for
    none, None when the handshake would be refused.

    Split as golang.org/x/net/websocket splits it: empty items are kept, and "" is one of
    the kubelet's protocols, so ``foo,`` negotiates no subprotocol rather than failing.
    """
    header = header.strip()
    requested = [item.strip() for item in header.split(",")] if header else [""]
    if _V5 in requested:
        return _V5
    return next((p for p in requested if p in _KUBELET_PROTOCOLS), None)


def _is_upgrade(request: web.Request) -> bool:
    return any("upgrade" in v.lower() for v in request.headers.getall(hdrs.CONNECTION, ()))


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get(hdrs.UPGRADE, "").lower() == "websocket" and _is_upgrade(request)


def _go_http_error(status: int, text: str) -> web.Response:
    """A response as Go's ``http.Error`` writes it."""
    return web.Response(
        status=status,
        text=text + "\n",
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


def _refuse_spdy(request: web.Request) -> web.Response:
    """The kubelet's answer to a SPDY upgrade whose protocol versions it cannot serve.

    This server speaks no SPDY, so every version is refused. kubectl only tries SPDY after
    its WebSocket attempt failed to upgrade, and reports this body as the error
    (``unable to upgrade connection: unable to upgrade: unable to negotiate protocol...``).
    """
    versions = [
        item.strip()
        for value in request.headers.getall("X-Stream-Protocol-Version", ())
        for item in value.split(",")
        if item.strip()
    ]
    if not versions:
        return _go_http_error(400, "unable to upgrade: X-Stream-Protocol-Version is required")
    return _go_http_error(
        403,
        "unable to upgrade: unable to negotiate protocol: "
        f"client supports {_go_list(versions)}, server accepts []",
    )


def _refuse_websocket() -> web.Response:
    """golang.org/x/net/websocket's refusal of an unsupported subprotocol: 403, no body,
    connection closed. client-go turns it into an upgrade failure."""
    response = web.Response(status=403)
    response.force_close()
    return response


# -- the session ----------------------------------------------------------------------------


async def serve_exec(
    request: web.Request, spawn: Spawn, options: ExecOptions
) -> web.StreamResponse:
    """Upgrade ``request`` to a WebSocket, run the command through ``spawn`` and stream it.

    Call after authentication, authorization and resolving the pod and container. A request
    that is not an upgrade raises ApiError 400 ``Upgrade request required`` (the API
    server's proxy); a SPDY upgrade or an unsupported subprotocol gets the refusal a real
    cluster sends, so clients that fall back or report errors behave as they would there.
    """
    if not _is_websocket(request):
        if _is_upgrade(request):
            return _refuse_spdy(request)
        raise ApiError(400, "BadRequest", "Upgrade request required")
    protocol = _negotiate(request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, ""))
    if protocol is None:
        return _refuse_websocket()
    ws = web.WebSocketResponse(
        protocols=(protocol,) if protocol else (),
        compress=False,  # neither wsstream nor client-go negotiates permessage-deflate
        max_msg_size=_MAX_MESSAGE,
        timeout=_CLOSE_TIMEOUT,
        decode_text=False,  # base64 protocols may send text frames; keep them as bytes
    )
    await ws.prepare(request)
    await _Session(request, ws, protocol, options).run(spawn)
    return ws


async def _exit_of(process: Spawned) -> int:
    """The process's exit status, as soon as it has exited.

    ``Process.wait()`` in Python 3.11 also waits for every pipe to close, which a background
    child can postpone forever; the child watcher sets ``returncode`` at exit, so poll it.
    """
    waiter = asyncio.ensure_future(process.wait())
    try:
        while process.returncode is None and not waiter.done():
            await asyncio.wait({waiter}, timeout=_EXIT_POLL)
    finally:
        waiter.cancel()
    returncode = process.returncode
    assert returncode is not None
    return returncode


def _kill_group(process: Spawned) -> None:
    """SIGKILL the process group the spawn created, unless the process has exited. While
    ``returncode`` is None the pid is unreaped, so the group id cannot have been reused."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


class _Session:
    """One exec: pumps output to the client and stdin to the process until either ends."""

    def __init__(
        self, request: web.Request, ws: web.WebSocketResponse, protocol: str, options: ExecOptions
    ) -> None:
        self._request = request
        self._ws = ws
        self._protocol = protocol
        self._options = options
        self._base64 = protocol in _BASE64_PROTOCOLS
        self._gone = asyncio.Event()
        self._stdin: asyncio.StreamWriter | None = None
        self._process: Spawned | None = None

    async def _send(self, channel: int, data: bytes) -> None:
        # Awaiting each send applies the client's backpressure: aiohttp drains the socket
        # once its buffer passes the writer limit, so a slow reader slows the pumps.
        if self._base64:
            await self._ws.send_str(chr(ord("0") + channel) + base64.b64encode(data).decode())
        else:
            await self._ws.send_bytes(bytes((channel,)) + data)

    async def run(self, spawn: Spawn) -> None:
        # Like the kubelet, announce the session with an empty frame on the lowest channel
        # the client will read; some clients wait for it before they send anything.
        first = _STDOUT if self._options.stdout else _STDERR if self._options.stderr else _ERROR
        try:
            await self._send(first, b"")
        except ConnectionError:
            return
        try:
            process = await spawn(list(self._options.command), self._options.tty)
        except ApiError as exc:  # refused before any command ran: reported as it is
            await self._finish(_channel_status(exc))
            return
        except Exception as exc:  # any failure to start is reported, as the kubelet does
            reason = str(exc) or type(exc).__name__
            await self._finish(_start_failure_status(reason, self._protocol))
            return
        try:
            await self._supervise(process)
        finally:
            # Server shutting down, or a bug: never leave the command behind.
            _kill_group(process)

    async def _supervise(self, process: Spawned) -> None:
        options = self._options
        self._process = process
        self._stdin = process.stdin
        if not options.stdin and self._stdin is not None:
            self._stdin.close()  # the command sees EOF at once, as with no stdin attached
            self._stdin = None
        # A terminal carries stderr on stdout; without one each stream keeps its channel.
        stdout_channel = _STDOUT if options.stdout else None
        stderr_channel = stdout_channel if options.tty else _STDERR if options.stderr else None
        exited = asyncio.ensure_future(_exit_of(process))
        pumps = [asyncio.ensure_future(self._pump(process.stdout, stdout_channel, exited))]
        if process.stderr is not None:
            pumps.append(asyncio.ensure_future(self._pump(process.stderr, stderr_channel, exited)))
        receiver = asyncio.ensure_future(self._receive())
        finished = asyncio.ensure_future(asyncio.wait([exited, *pumps]))
        gone = asyncio.ensure_future(self._gone.wait())
        tasks = [exited, *pumps, receiver, finished, gone]
        try:
            await asyncio.wait({finished, gone}, return_when=asyncio.FIRST_COMPLETED)
            if self._gone.is_set() and not exited.done():
                _kill_group(process)
                await exited
                # Drop the connection as wsstream does; if the client closed it, this is a no-op.
                if (transport := self._request.transport) is not None:
                    transport.close()
                return
            receiver.cancel()  # stop reading: close() below must own the socket's reads
            gone.cancel()
            if self._stdin is not None:
                self._stdin.close()
            await self._finish(_exit_status(options.command, exited.result(), self._protocol))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _finish(self, status: dict[str, Any]) -> None:
        """Report the outcome and close as the API server does: send the close frame and
        wait for the client's, so output still in flight is not cut off by a reset."""
        if self._protocol in _JSON_STATUS_PROTOCOLS:
            report: bytes | None = _go_json(status)
        else:  # the pre-v4 protocols only report failures, as the bare message
            report = status["message"].encode() if status["status"] != "Success" else None
        with contextlib.suppress(ConnectionError):
            if report is not None:
                await self._send(_ERROR, report)
            await self._ws.close()

    async def _pump(
        self, reader: asyncio.StreamReader | None, channel: int | None, exited: asyncio.Future[int]
    ) -> None:
        """Copy one output stream to ``channel`` (None: read and discard) until it is done."""
        if reader is None:
            return
        budget = POST_EXIT_BUDGET
        while budget > 0:
            chunk = await self._read(reader, exited)
            if not chunk:
                return
            if exited.done():
                budget -= len(chunk)
            if channel is not None:
                try:
                    await self._send(channel, chunk)
                except ConnectionError:
                    self._gone.set()
                    return

    @staticmethod
    async def _read(reader: asyncio.StreamReader, exited: asyncio.Future[int]) -> bytes:
        """The next chunk; after the exit, b"" once the stream stays silent for EXIT_GRACE.

        ``StreamReader.read`` keeps unread data buffered when cancelled, so giving up on a
        pending read loses nothing.
        """
        read = asyncio.ensure_future(reader.read(_CHUNK))
        try:
            if not exited.done():
                await asyncio.wait({read, exited}, return_when=asyncio.FIRST_COMPLETED)
            if not read.done():
                await asyncio.wait({read}, timeout=EXIT_GRACE)
            return read.result() if read.done() else b""
        except OSError:  # the pipe broke: nothing more will come
            return b""
        finally:
            read.cancel()

    async def _receive(self) -> None:
        """Feed stdin from the client until it closes the connection, then flag it gone."""
        close_signal = self._protocol == _V5
        async for message in self._ws:
            if message.type is WSMsgType.ERROR:
                break
            data: bytes = message.data
            if not data:
                continue
            if close_signal and data[0] == _CLOSE_SIGNAL:
                if len(data) != 2 or data[1] > _RESIZE:
                    break  # malformed: wsstream drops the connection, and so do we
                if data[1] == _STDIN:
                    self._close_stdin()
                continue
            channel, payload = data[0], data[1:]
            if self._base64:
                channel -= ord("0")
                try:
                    payload = base64.b64decode(payload, validate=True)
                except binascii.Error:
                    continue  # wsstream logs and drops an undecodable frame
            if channel == _STDIN and not await self._write_stdin(payload):
                break
            if channel == _RESIZE:
                self._resize(payload)
            # Frames on output channels are ignored: there is nothing to read there.
        self._gone.set()

    def _resize(self, payload: bytes) -> None:
        """Apply a resize frame, JSON ``{"Width": W, "Height": H}`` (``remotecommand``'s
        TerminalSize), to the terminal. Without a terminal it is ignored, and so is a frame
        that does not decode, as the kubelet logs and drops it."""
        if not self._options.tty or self._process is None:
            return
        try:
            size = json.loads(payload)
            width, height = int(size.get("Width", 0)), int(size.get("Height", 0))
        except (ValueError, TypeError, AttributeError):
            return
        resize = getattr(self._process, "resize", None)
        if resize is not None:
            resize(width, height)

    async def _write_stdin(self, data: bytes) -> bool:
        """Write to the process, waiting until it reads; False if the client vanished.

        While the process is not reading, neither is this loop, so aiohttp stops reading the
        socket and a client that disconnects goes unseen. Pinging it then makes the kernel
        answer a dead peer with a reset, and the next write fails.
        """
        stdin = self._stdin
        if stdin is None or stdin.is_closing():
            return True
        stdin.write(data)
        drain = asyncio.ensure_future(stdin.drain())
        try:
            while not (await asyncio.wait({drain}, timeout=_PROBE_INTERVAL))[0]:
                try:
                    await self._ws.ping()
                except ConnectionError:
                    return False
            drain.result()
        except ConnectionError:  # the process closed its stdin or exited
            self._stdin = None
        finally:
            drain.cancel()
        return True

    def _close_stdin(self) -> None:
        if self._stdin is not None:
            self._stdin.close()
            self._stdin = None
