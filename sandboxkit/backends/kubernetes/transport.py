"""The exec stream's connection: URL, credentials, TLS, proxy and the WebSocket upgrade.

websocket-client (the official client's own dependency) performs only the handshake here;
frames are then read and written on its socket directly (:mod:`.frames`). Everything the
handshake needs is read from the ApiClient's Configuration, so the stream authenticates,
verifies and proxies exactly as the client's urllib3 pool does: its TLS settings, its auth
settings (whose ``refresh_api_key_hook`` refreshes exec-plugin and OIDC tokens), and its
proxy and nothing else (not the ``https_proxy`` environment variables, which the pool ignores
too).

Two caches are shared between threads, both immutable in use and lock-protected: SSLContexts
per TLS configuration (loading a CA and a key pair costs ~2 ms), and the last TLS session per
server and context, so the next exec resumes instead of redoing the full handshake (~1 ms
each).
"""

from __future__ import annotations

import functools
import os
import socket
import ssl
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode, urlparse

import websocket

from ...errors import ExecProtocolError, SandboxError
from .api import status_error

__all__ = ["handshake", "remember_tls_session"]


def _exec_url(host: str, namespace: str, pod: str, container: str | None,
              argv: Sequence[str], stdin: bool, tty: bool = False) -> str:
    parsed = urlparse(host)
    scheme = {"https": "wss", "http": "ws"}.get(parsed.scheme, parsed.scheme)
    path = (f"{parsed.path.rstrip('/')}/api/v1/namespaces/{quote(namespace, safe='')}"
            f"/pods/{quote(pod, safe='')}/exec")
    query: list[tuple[str, str]] = [("command", arg) for arg in argv]
    if container:
        query.append(("container", container))
    query += [("stdin", "true" if stdin else "false"), ("stdout", "true"),
              ("stderr", "false" if tty else "true"), ("tty", "true" if tty else "false")]
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


def remember_tls_session(key: tuple[Any, ...], sock: ssl.SSLSocket) -> None:
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


def handshake(api_client: Any, namespace: str, pod: str, container: str | None,
               argv: Sequence[str], *, stdin: bool, timeout: float,
               protocols: Sequence[str], tty: bool = False,
               ) -> tuple[websocket.WebSocket, tuple[Any, ...] | None]:
    """Connect and upgrade; returns the WebSocket and, for a direct TLS connection, the key
    under which its TLS session may be remembered. ``tty`` asks for a terminal (``kubectl
    exec -t``): stderr is then merged into stdout, so it is not requested."""
    configuration = api_client.configuration
    url = _exec_url(configuration.host, namespace, pod, container, argv, stdin, tty)
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
    """A typed error for an upgrade the API server refused, from its Status body: the same
    translation as every other refused request (:func:`.api.status_error`)."""
    return status_error(exc.status_code, exc.resp_body, verb="create", resource="pods/exec",
                        namespace=namespace, name=pod, container=container)
