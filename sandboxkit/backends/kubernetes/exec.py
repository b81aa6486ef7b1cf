"""Run one command in a pod over the ``pods/exec`` WebSocket, with semantics callers can trust.

Why not ``kubernetes.stream.stream``: its WSClient copies every frame through Python string
buffers (about 1 MB/s and hundreds of MB of memory for large output), loses output at its
deadline, patches ``api_client.request`` while it runs (two threads sharing a client
collide), and leaves the remote process running on timeout. Here websocket-client (the
official client's own dependency) performs only the handshake; frames are then read and
written on its socket directly, in one thread, without unbounded buffers.

Wire protocol
    ``v5.channel.k8s.io`` is offered first, then ``v4.channel.k8s.io``. Every binary frame
    starts with a channel byte: 0 stdin, 1 stdout, 2 stderr, 3 error (a JSON
    ``metav1.Status``). v5 adds the close signal ``[255, 0]``, which gives the remote stdin
    its EOF. The exit code comes from the Status: ``Success`` is 0, ``NonZeroExitCode`` carries
    ``details.causes[reason=ExitCode]``. Any other Failure (the container is gone, the runtime
    could not start the command) raises :class:`ExecError`; a stream that ends with neither a
    Status nor the wrapper's end markers (below) raises ExecProtocolError. No exit code is
    ever invented.

The wrapper (``wrap=True``, the default)
    The user's argv runs under a small POSIX ``sh`` script, passed as positional arguments,
    so no shell text is ever built from user data (nothing needs quoting). It exists because
    the exec API alone cannot do four things sandboxkit promises:

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
    * Bound stdin on v4 servers, which cannot signal EOF: when stdin is given, its length N
      is passed to the wrapper, which feeds the command through ``head -c N`` (when ``head``
      exists), so the command sees EOF after N bytes whatever the protocol. On v5 the close
      signal is sent as well. Stdin of unknown length (a pipe) is first spooled to a
      temporary file (memory up to 8 MiB) to learn N.

    Markers are ``\\0sbxk:<128-bit random hex>:<kind><number>\\n``: G/T (start: process group
    id, or pid for the tree fallback; stdout only), X/K (end: exit status; K means the in-pod
    watchdog killed the command). They are removed from the output byte-exactly, including
    when split across frames; the per-call nonce makes a collision with real output
    impossible short of the command reading its wrapper's argv.

    ``wrap=False`` runs argv as is (for images without ``/bin/sh``, or for helpers such as
    the kill itself): then a timeout only closes the stream, and stdin EOF needs v5.

Memory
    At most ``output_limit`` bytes per stream are kept in the result (``truncated`` says so
    beyond it); every byte still reaches ``on_stdout``/``on_stderr`` and the sinks. Reading
    holds about a megabyte plus at most one partial frame (the measured peak for 1 GiB
    streamed to a callback is the 10 MiB kept plus ~4 MB).

Threads
    A call owns its socket and all of its state, so calls may run in parallel from many
    threads on one ApiClient (only its Configuration is read; ``api_client.request`` is never
    patched). Two caches are shared, both immutable in use and lock-protected: SSLContexts
    per TLS configuration (loading a CA and a key pair costs ~2 ms), and the last TLS
    session per server and context, so the next exec resumes instead of redoing the full
    handshake (~1 ms each).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import select
import shlex
import shutil
import socket
import ssl
import stat
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import quote, urlencode, urlparse

import websocket

from ...errors import (
    CommandTimeout,
    ExecError,
    ExecProtocolError,
    PermissionDenied,
    SandboxError,
    SandboxGone,
)
from ...models import CommandResult
from ..wrapper import OutputStream as _OutputStream
from ..wrapper import TextCallback, kill_argv, marker_tag, new_nonce, wrap_argv

__all__ = [
    "CHANNEL_PROTOCOLS",
    "DEFAULT_OUTPUT_LIMIT",
    "STATUS_GRACE",
    "OutputCallback",
    "TextCallback",
    "kill_process_group",
    "run_exec",
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

KILL_DRAIN = 2.0
"""After killing the remote process group, seconds spent collecting its last output."""

CONNECT_TIMEOUT = 30.0
"""Seconds for the TCP connect, TLS and WebSocket handshake."""

OutputCallback = Callable[[bytes], object]

_STDIN, _STDOUT, _STDERR, _ERROR = 0, 1, 2, 3
_CLOSE_SIGNAL = 255
_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

_READ_SIZE = 256 << 10
_READ_BUDGET = 1 << 20  # bytes read per pump before control returns to the loop
_SEND_SLICE = 64 << 10
_STDIN_CHUNK = 64 << 10
_STDIN_HIGH_WATER = 256 << 10  # queued-but-unsent bytes beyond which stdin is not read
_SPOOL_MEMORY = 8 << 20
_START_WAIT = 1.0  # on interrupt, how long to wait for the start marker (the pgid)
_KILL_TIMEOUT = 15.0



# -- public entry points --------------------------------------------------------------------


def run_exec(
    api_client: Any,
    namespace: str,
    pod: str,
    container: str | None,
    argv: Sequence[str],
    *,
    stdin: bytes | bytearray | memoryview | IO[bytes] | None = None,
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
    if not argv or not all(isinstance(arg, str) for arg in argv):
        raise ValueError(f"argv must be a non-empty list of strings, got {argv!r}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if output_limit < 0:
        raise ValueError(f"output_limit must be >= 0, got {output_limit!r}")
    protocols = list(protocols)
    if not protocols or not set(protocols) <= set(CHANNEL_PROTOCOLS):
        raise ValueError(f"protocols must be a non-empty subset of {CHANNEL_PROTOCOLS}")
    text = command_text if command_text is not None else shlex.join(argv)
    started = time.monotonic()
    source = _StdinSource.open(stdin) if stdin is not None else None
    try:
        nonce = new_nonce() if wrap else ""
        remote_argv = argv
        if wrap:
            remote_argv = wrap_argv(argv, nonce, timeout=timeout,
                                    stdin_length=None if source is None else source.length)
        tag = marker_tag(nonce) if wrap else None
        stdout = _OutputStream(output_limit, on_stdout, stdout_sink, tag)
        stderr = _OutputStream(output_limit, on_stderr, stderr_sink, tag)
        ws, session_key = _handshake(api_client, namespace, pod, container, remote_argv,
                                     stdin=source is not None, timeout=connect_timeout,
                                     protocols=protocols)
        channel = _FrameChannel(ws, session_key)

        def kill(kind: str, pid: int) -> None:
            kill_process_group(api_client, namespace, pod, container, kind, pid)

        session = _Session(channel, stdout, stderr, source, kill, wrapped=wrap)
        try:
            outcome = session.run(None if timeout is None else started + timeout)
        except BaseException:
            session.abort()
            raise
        finally:
            channel.close()
            stdout.finish()
            stderr.finish()
    finally:
        if source is not None:
            source.close()
    result = CommandResult(
        command=text,
        exit_code=outcome.exit_code,
        stdout_bytes=stdout.value(),
        stderr_bytes=stderr.value(),
        duration=time.monotonic() - started,
        truncated=stdout.truncated or stderr.truncated,
    )
    if outcome.timed_out:
        raise CommandTimeout(text, timeout or 0.0, result)
    return result


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


# -- the handshake --------------------------------------------------------------------------


def _exec_url(host: str, namespace: str, pod: str, container: str | None,
              argv: Sequence[str], stdin: bool) -> str:
    parsed = urlparse(host)
    scheme = {"https": "wss", "http": "ws"}.get(parsed.scheme, parsed.scheme)
    path = (f"{parsed.path.rstrip('/')}/api/v1/namespaces/{quote(namespace, safe='')}"
            f"/pods/{quote(pod, safe='')}/exec")
    query: list[tuple[str, str]] = [("command", arg) for arg in argv]
    if container:
        query.append(("container", container))
    query += [("stdin", "true" if stdin else "false"), ("stdout", "true"),
              ("stderr", "true"), ("tty", "false")]
    return f"{scheme}://{parsed.netloc}{path}?{urlencode(query)}"


def _auth_headers(configuration: Any) -> list[str]:
    """Headers from the client's own auth machinery: ``auth_settings()`` calls
    ``refresh_api_key_hook``, which is how exec plugins and OIDC refresh their tokens."""
    headers = []
    for setting in configuration.auth_settings().values():
        value = setting.get("value")
        if setting.get("in") == "header" and value:
            if "\r" in value or "\n" in value:
                raise ExecProtocolError(f"refusing a {setting['key']} header with a newline")
            headers.append(f"{setting['key']}: {value}")
    return headers


def _ssl_options(configuration: Any) -> dict[str, Any]:
    """TLS settings that verify as the ApiClient's urllib3 pool does."""
    verify = bool(configuration.verify_ssl)
    files = (configuration.ssl_ca_cert if verify else None, configuration.cert_file,
             configuration.key_file)
    context = _ssl_context(verify, verify and configuration.assert_hostname is not False,
                           *files, _file_stamps(files))
    options: dict[str, Any] = {"context": context}
    if getattr(configuration, "tls_server_name", None):
        options["server_hostname"] = configuration.tls_server_name
    return options


def _file_stamps(paths: Sequence[str | None]) -> tuple[tuple[int, int], ...]:
    """Identify the files' contents cheaply, so a rotated certificate gets a new context."""
    stamps = []
    for path in paths:
        try:
            info = os.stat(path) if path else None
        except OSError:
            info = None
        stamps.append((info.st_mtime_ns, info.st_size) if info else (0, -1))
    return tuple(stamps)


@functools.lru_cache(maxsize=16)
def _ssl_context(verify: bool, check_hostname: bool, ca_file: str | None,
                 cert_file: str | None, key_file: str | None,
                 stamps: tuple[tuple[int, int], ...]) -> ssl.SSLContext:
    """An SSLContext per distinct TLS configuration. Loading a CA and a key pair costs about
    2 ms, a sixth of an exec round trip; contexts are safe to share between threads."""
    del stamps  # part of the cache key only
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        if ca_file:
            context.load_verify_locations(cafile=ca_file)
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        context.check_hostname = check_hostname
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context


_TLS_SESSIONS: OrderedDict[tuple[Any, ...], ssl.SSLSession] = OrderedDict()
_TLS_SESSIONS_LOCK = threading.Lock()
_TLS_SESSIONS_MAX = 32


def _tls_connect(url: str, sslopt: dict[str, Any],
                 timeout: float) -> tuple[ssl.SSLSocket, tuple[Any, ...]]:
    """TCP and TLS for a direct (unproxied) wss:// URL, resuming the last TLS session to
    the same server with the same credentials: every exec is a new connection, and the
    full handshake is a sizeable part of a short command's round trip. The server still
    authenticates each connection (a resumed session carries the client certificate it was
    made with; bearer tokens travel per request)."""
    parsed = urlparse(url)
    host = parsed.hostname or ""
    port = parsed.port or 443
    context: ssl.SSLContext = sslopt["context"]
    server_hostname = sslopt.get("server_hostname") or host
    key = (host, port, server_hostname, context)
    with _TLS_SESSIONS_LOCK:
        session = _TLS_SESSIONS.get(key)
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        try:
            tls = context.wrap_socket(raw, server_hostname=server_hostname, session=session)
        except ssl.SSLError:
            if session is None:
                raise
            _forget_tls_session(key)  # the server refused to resume: a full handshake
            raw.close()
            raw = socket.create_connection((host, port), timeout=timeout)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = context.wrap_socket(raw, server_hostname=server_hostname)
        return tls, key
    except BaseException:
        raw.close()
        raise


def _remember_tls_session(key: tuple[Any, ...], sock: ssl.SSLSocket) -> None:
    """Keep the session for the next connection to the same server. TLS 1.3 tickets arrive
    after the handshake, so this is called once the stream has been read."""
    session = sock.session
    if session is None or not session.has_ticket:
        return
    with _TLS_SESSIONS_LOCK:
        _TLS_SESSIONS[key] = session
        _TLS_SESSIONS.move_to_end(key)
        while len(_TLS_SESSIONS) > _TLS_SESSIONS_MAX:
            _TLS_SESSIONS.popitem(last=False)


def _forget_tls_session(key: tuple[Any, ...]) -> None:
    with _TLS_SESSIONS_LOCK:
        _TLS_SESSIONS.pop(key, None)


def _proxy_options(configuration: Any) -> dict[str, Any]:
    """The Configuration's proxy, and no other: the ApiClient's urllib3 pool ignores the
    ``https_proxy`` environment variables, so the exec stream must too (``*`` disables
    websocket-client's fallback to them)."""
    if not configuration.proxy:
        return {"http_no_proxy": ["*"]}
    proxy = urlparse(configuration.proxy)
    scheme = proxy.scheme or "http"
    options: dict[str, Any] = {
        "http_proxy_host": proxy.hostname,
        "http_proxy_port": proxy.port or (443 if scheme == "https" else 80),
        "proxy_type": "http" if scheme in ("http", "https") else scheme,
    }
    if proxy.username:
        options["http_proxy_auth"] = (proxy.username, proxy.password or "")
    if configuration.no_proxy:
        options["http_no_proxy"] = [h.strip() for h in configuration.no_proxy.split(",")]
    return options


def _handshake(api_client: Any, namespace: str, pod: str, container: str | None,
               argv: Sequence[str], *, stdin: bool, timeout: float,
               protocols: Sequence[str]) -> tuple[websocket.WebSocket, tuple[Any, ...] | None]:
    """Connect and upgrade; returns the WebSocket and, for a direct TLS connection, the key
    under which its TLS session may be remembered."""
    configuration = api_client.configuration
    url = _exec_url(configuration.host, namespace, pod, container, argv, stdin)
    header = _auth_headers(configuration)
    if getattr(api_client, "user_agent", None):
        header.append(f"User-Agent: {api_client.user_agent}")
    sslopt = _ssl_options(configuration)
    ws = websocket.WebSocket(sslopt=sslopt, skip_utf8_validation=True)
    session_key = None
    try:
        sock = None
        if url.startswith("wss://") and not configuration.proxy:
            sock, session_key = _tls_connect(url, sslopt, timeout)
        ws.connect(url, header=header, subprotocols=list(protocols), timeout=timeout,
                   suppress_origin=True, socket=sock, **_proxy_options(configuration))
    except websocket.WebSocketBadStatusException as exc:
        ws.shutdown()
        raise _refusal(exc, namespace, pod, container) from None
    except websocket.WebSocketException as exc:
        ws.shutdown()
        raise ExecProtocolError(f"exec handshake with {pod} failed: {exc}") from exc
    if ws.getsubprotocol() not in protocols:
        ws.shutdown()
        raise ExecProtocolError(f"the server chose none of the channel protocols {protocols}")
    return ws, session_key


def _refusal(exc: websocket.WebSocketBadStatusException, namespace: str, pod: str,
             container: str | None) -> SandboxError:
    """A typed error for an upgrade the API server refused, from its Status body."""
    body = exc.resp_body or b""
    status: dict[str, Any] = {}
    with contextlib.suppress(ValueError, TypeError):
        parsed = json.loads(body)
        if isinstance(parsed, dict):
            status = parsed
    message = str(status.get("message") or body.decode("utf-8", "replace").strip()
                  or f"HTTP {exc.status_code}")
    reason = str(status.get("reason") or "")
    if exc.status_code in (401, 403):
        identity = re.search(r'User "([^"]*)"', message)
        return PermissionDenied(message, verb="create", resource="pods/exec",
                                namespace=namespace,
                                identity=identity.group(1) if identity else "")
    if exc.status_code == 404:
        return SandboxGone(f"pod {namespace}/{pod} not found: {message}",
                           reason=reason or "NotFound")
    where = f"{namespace}/{pod}" + (f" container {container}" if container else "")
    return ExecError(f"exec in {where} refused: {message}", reason=reason,
                     code=exc.status_code, status=status)


# -- frames ---------------------------------------------------------------------------------


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


class _FrameChannel:
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
                _remember_tls_session(self._session_key, self._tls)
        with contextlib.suppress(Exception):
            self._ws.shutdown()


# -- stdin and output -----------------------------------------------------------------------


class _StdinSource:
    """Stdin with a known length, so the wrapper can bound it for v4 servers."""

    def __init__(self, reader: Callable[[int], bytes], length: int,
                 owned: IO[bytes] | None = None) -> None:
        self._reader = reader
        self.length = length
        self._remaining = length
        self._owned = owned

    @classmethod
    def open(cls, stdin: bytes | bytearray | memoryview | IO[bytes]) -> _StdinSource:
        if isinstance(stdin, str):
            raise TypeError("stdin must be bytes or a binary file; encode text first")
        if isinstance(stdin, (bytes, bytearray, memoryview)):
            view = memoryview(stdin).cast("B")
            offset = 0

            def read_bytes(size: int) -> bytes:
                nonlocal offset
                chunk = bytes(view[offset:offset + size])
                offset += len(chunk)
                return chunk

            return cls(read_bytes, len(view))
        length = _remaining_length(stdin)
        if length is not None:
            return cls(stdin.read, length)
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # noqa: SIM115
        shutil.copyfileobj(stdin, spool)
        length = spool.tell()
        spool.seek(0)
        return cls(spool.read, length, owned=spool)

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes, never more than ``length`` in all; b"" at the end."""
        if self._remaining <= 0:
            return b""
        chunk = self._reader(min(size, self._remaining))
        if isinstance(chunk, str):
            raise TypeError("stdin must be opened in binary mode")
        self._remaining -= len(chunk)
        if not chunk:
            self._remaining = 0
        return chunk

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()


def _remaining_length(stream: IO[bytes]) -> int | None:
    """Bytes left in a regular or seekable file, or None for a pipe or socket."""
    with contextlib.suppress(AttributeError, OSError, ValueError):
        info = os.fstat(stream.fileno())
        if not _is_regular(info.st_mode):
            return None
    with contextlib.suppress(AttributeError, OSError, ValueError):
        if stream.seekable():
            here = stream.tell()
            end = stream.seek(0, os.SEEK_END)
            stream.seek(here)
            return max(end - here, 0)
    return None


def _is_regular(mode: int) -> bool:
    return stat.S_ISREG(mode)


# -- one session ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    exit_code: int
    timed_out: bool


class _Session:
    """Drives one exec stream to its end: feeds stdin, demultiplexes output, reads markers
    and the Status, and decides when the command is over."""

    def __init__(self, channel: _FrameChannel, stdout: _OutputStream, stderr: _OutputStream,
                 stdin: _StdinSource | None, kill: Callable[[str, int], None],
                 wrapped: bool = True) -> None:
        self._wrapped = wrapped  # without the wrapper there are no markers and no kill
        self._channel = channel
        self._stdout = stdout
        self._stderr = stderr
        self._stdin = stdin
        self._kill = kill
        self._error = bytearray()
        self.status: dict[str, Any] | None = None
        self.start: tuple[str, int] | None = None  # (G|T, pgid or pid)
        self.end: tuple[str, int] | None = None  # (X|K, exit status)

    @property
    def _output_done(self) -> bool:
        return self._stdout.ended and self._stderr.ended

    @property
    def _over(self) -> bool:
        return self.status is not None or self._channel.peer_closed

    def run(self, deadline: float | None) -> _Outcome:
        grace_until: float | None = None
        while not self._over:
            now = time.monotonic()
            if self._output_done:
                if grace_until is None:
                    grace_until = now + STATUS_GRACE
                if now >= grace_until:
                    break  # a background child holds the pipes; the markers say it all
            elif deadline is not None and now >= deadline:
                return self._time_out()
            limits = [t - now for t in (grace_until, deadline) if t is not None]
            self._step(max(min(limits), 0.0) if limits else None)
        return _Outcome(self._exit_code(), timed_out=self.end is not None and self.end[0] == "K")

    def _step(self, timeout: float | None) -> None:
        self._feed_stdin()
        # Everything that arrived is parsed before any of it reaches a callback: a callback
        # that raises (Ctrl-C) must not cost a marker or the status read in the same pump.
        output: list[tuple[_OutputStream, list[bytes]]] = []
        for channel, data in self._channel.pump(timeout):
            if channel in (_STDOUT, _STDERR):
                stream = self._stdout if channel == _STDOUT else self._stderr
                pieces, markers = stream.split(data)
                self._markers(markers)
                output.append((stream, pieces))
            elif channel == _ERROR:
                self._error += data
                with contextlib.suppress(ValueError):
                    status = json.loads(self._error)
                    if isinstance(status, dict):
                        self.status = status
        for stream, pieces in output:
            stream.emit(pieces)

    def _feed_stdin(self) -> None:
        source = self._stdin
        if source is None:
            return
        while self._channel.backlog < _STDIN_HIGH_WATER:
            chunk = source.read(_STDIN_CHUNK)
            if not chunk:
                if self._channel.protocol == V5_PROTOCOL:
                    self._channel.send_close_signal(_STDIN)
                self._stdin = None
                return
            self._channel.send(_STDIN, chunk)

    def _markers(self, markers: list[tuple[str, int]]) -> None:
        for kind, value in markers:
            if kind in ("G", "T"):
                self.start = (kind, value)
            elif self.end is None:
                self.end = (kind, value)

    def _exit_code(self) -> int:
        if self.status is not None:
            return _status_exit_code(self.status)
        if self.end is not None:
            return self.end[1]
        detail = f": {bytes(self._error)!r}" if self._error else ""
        raise ExecProtocolError(f"the exec stream ended without an exit status{detail}")

    def _time_out(self) -> _Outcome:
        """Kill the remote group, collect what it wrote until it died, report the timeout.
        Unwrapped, all there is to do is to close the stream."""
        if not self._wrapped:
            return _Outcome(-1, timed_out=True)
        if self.start is None:
            self._pump_until(lambda: self.start is not None, _START_WAIT)
        if self.start is not None and not self._output_done and not self._over:
            self._kill(*self.start)
        self._pump_until(lambda: self._output_done, KILL_DRAIN)
        code = -1  # unknown: the stream was abandoned before any status arrived
        with contextlib.suppress(SandboxError):
            code = self._exit_code()
        return _Outcome(code, timed_out=True)

    def _pump_until(self, done: Callable[[], bool], seconds: float) -> None:
        until = time.monotonic() + seconds
        while not done() and not self._over:
            left = until - time.monotonic()
            if left <= 0:
                return
            self._step(left)

    def abort(self) -> None:
        """On the way out of an interrupt or a callback error: kill the remote command.
        Callbacks are muted first, so one that raised is not called again meanwhile."""
        self._stdout.muted = self._stderr.muted = True
        with contextlib.suppress(Exception):
            if not self._wrapped or self._over or self._output_done:
                return
            if self.start is None:
                self._pump_until(lambda: self.start is not None, _START_WAIT)
            if self.start is not None and not self._over:
                self._kill(*self.start)


def _status_exit_code(status: dict[str, Any]) -> int:
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
