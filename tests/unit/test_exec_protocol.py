"""The exec client's wire handling without a cluster: frames over a socketpair, the wrapper's
markers split at every byte, the Status rules, stdin sources and the URL."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlparse

import pytest

from sandboxkit.backends.kubernetes import exec as ex
from sandboxkit.backends.kubernetes import frames, transport
from sandboxkit.backends.session import Outcome
from sandboxkit.backends.stdin import StdinSource
from sandboxkit.backends.wrapper import WRAPPER, OutputStream, TextCallback
from sandboxkit.errors import ExecError, ExecProtocolError

NONCE = "0123456789abcdef0123456789abcdef"
TAG = b"\x00sbxk:" + NONCE.encode() + b":"


def marker(kind: str, value: int) -> bytes:
    return TAG + f"{kind}{value}\n".encode()


# -- markers --------------------------------------------------------------------------------


def feed_split(data: bytes, at: list[int], limit: int = 1 << 20) -> tuple[bytes, list[Any], bool]:
    seen: list[bytes] = []
    stream = OutputStream(limit, seen.append, None, TAG)
    markers: list[Any] = []
    cuts = [0, *at, len(data)]
    for start, end in itertools.pairwise(cuts):
        markers += stream.feed(data[start:end])
    stream.finish()
    assert b"".join(seen) == stream.value()
    return stream.value(), markers, stream.ended


def test_markers_are_removed_wherever_frames_split() -> None:
    body = b"out\x00put " + "é".encode() * 3
    data = body[:5] + marker("G", 42) + body[5:] + marker("X", 3) + b"after the end"
    for cut in range(1, len(data)):
        for second in (cut + 1, cut + 7):
            points = [cut] + ([second] if second < len(data) else [])
            value, markers, ended = feed_split(data, points)
            assert value == body, (cut, second)
            assert markers == [("G", 42), ("X", 3)]
            assert ended


def test_a_partial_tag_at_the_end_is_output() -> None:
    data = b"data" + TAG[:9]
    value, markers, ended = feed_split(data, [5])
    assert (value, markers, ended) == (data, [], False)


def test_other_nonces_and_nul_bytes_pass_through() -> None:
    data = b"\x00\x00sbxk:ffffffffffffffffffffffffffffffff:X0\n\x00sbx\x00"
    assert feed_split(data, [1, 3, 20])[0] == data


def test_malformed_marker_is_a_protocol_error() -> None:
    stream = OutputStream(100, None, None, TAG)
    with pytest.raises(ExecProtocolError):
        stream.feed(TAG + b"Q1\n")


def test_limit_truncates_but_callbacks_see_everything() -> None:
    seen: list[bytes] = []
    sink = io.BytesIO()
    stream = OutputStream(10, seen.append, sink, None)
    for _ in range(5):
        stream.feed(b"0123456")
    assert stream.value() == b"0123456012"
    assert stream.truncated
    assert b"".join(seen) == sink.getvalue() == b"0123456" * 5


def test_text_callback_decodes_incrementally() -> None:
    parts: list[str] = []
    callback = TextCallback(parts.append)
    data = "aé€😀".encode()
    for byte in data:
        callback(bytes([byte]))
    callback(b"\xff")
    callback.flush()
    assert "".join(parts) == "aé€😀\ufffd"


# -- status ---------------------------------------------------------------------------------


def test_status_exit_codes() -> None:
    assert ex.status_exit_code({"status": "Success"}) == 0
    failure = {"status": "Failure", "reason": "NonZeroExitCode",
               "details": {"causes": [{"reason": "ExitCode", "message": "42"}]}}
    assert ex.status_exit_code(failure) == 42


@pytest.mark.parametrize("status", [
    {"status": "Failure", "reason": "NonZeroExitCode", "details": {"causes": []}},
    {"status": "Failure", "reason": "NonZeroExitCode",
     "details": {"causes": [{"reason": "ExitCode", "message": "x"}]}},
    {"status": "Whatever"},
    {},
])
def test_unreadable_status_is_never_an_exit_code(status: dict[str, Any]) -> None:
    with pytest.raises(ExecProtocolError):
        ex.status_exit_code(status)


def test_other_failures_are_exec_errors() -> None:
    with pytest.raises(ExecError) as caught:
        ex.status_exit_code({"status": "Failure", "reason": "InternalError", "code": 500,
                              "message": "container not running"})
    assert (caught.value.reason, caught.value.code) == ("InternalError", 500)
    assert "container not running" in str(caught.value)


# -- request --------------------------------------------------------------------------------


def test_exec_url_quotes_everything() -> None:
    url = transport._exec_url("https://h:6443/prefix/", "ns", "p", "c",
                       ["sh", "-c", "echo 'a&b' ; x=1"], stdin=True)
    parsed = urlparse(url)
    assert (parsed.scheme, parsed.netloc) == ("wss", "h:6443")
    assert parsed.path == "/prefix/api/v1/namespaces/ns/pods/p/exec"
    query = parse_qsl(parsed.query)
    assert [v for k, v in query if k == "command"] == ["sh", "-c", "echo 'a&b' ; x=1"]
    assert ("container", "c") in query and ("stdin", "true") in query
    assert ("tty", "false") in query


def test_auth_headers_use_the_refresh_hook() -> None:
    from kubernetes import client

    config = client.Configuration()
    config.api_key_prefix = {"authorization": "Bearer"}
    calls: list[int] = []

    def refresh(cfg: Any) -> None:
        calls.append(1)
        cfg.api_key = {"authorization": f"token-{len(calls)}"}

    config.api_key = {"authorization": "stale"}
    config.refresh_api_key_hook = refresh  # type: ignore[assignment]
    assert transport._auth_headers(config) == ["authorization: Bearer token-1"]
    assert transport._auth_headers(config) == ["authorization: Bearer token-2"]


def test_proxy_options_ignore_the_environment_unless_configured() -> None:
    from kubernetes import client

    config = client.Configuration()
    assert transport._proxy_options(config) == {"http_no_proxy": ["*"]}
    config.proxy = "http://user:pw@proxy:3128"
    config.no_proxy = "a, b"
    assert transport._proxy_options(config) == {
        "http_proxy_host": "proxy", "http_proxy_port": 3128, "proxy_type": "http",
        "http_proxy_auth": ("user", "pw"), "http_no_proxy": ["a", "b"]}


# -- stdin ----------------------------------------------------------------------------------


def drain(source: Any) -> bytes:
    chunks = []
    while chunk := source.read(7):
        chunks.append(chunk)
    return b"".join(chunks)


def test_stdin_sources_know_their_length(tmp_path: Any) -> None:
    source = StdinSource.open(b"hello")
    assert (source.length, drain(source)) == (5, b"hello")

    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    with path.open("rb") as handle:
        handle.seek(4)
        source = StdinSource.open(handle)
        assert (source.length, drain(source)) == (6, b"456789")

    read_end, write_end = os.pipe()
    os.write(write_end, b"piped data")
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        source = StdinSource.open(pipe)
        assert (source.length, drain(source)) == (10, b"piped data")
        source.close()

    with pytest.raises(TypeError):
        StdinSource.open("text")  # type: ignore[arg-type]


# -- frames and sessions over a socketpair --------------------------------------------------


class FakeWebSocket:
    """What FrameChannel needs of websocket-client after the handshake."""

    def __init__(self, sock: socket.socket, protocol: str) -> None:
        self.sock = sock
        self._protocol = protocol

    def getsubprotocol(self) -> str:
        return self._protocol

    def shutdown(self) -> None:
        self.sock.close()


def server_frame(channel: int | None, data: bytes, opcode: int = 0x2, fin: bool = True) -> bytes:
    payload = data if channel is None else bytes([channel]) + data
    size = len(payload)
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        head = bytes([first, size])
    elif size < 1 << 16:
        head = bytes([first, 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([first, 127]) + size.to_bytes(8, "big")
    return head + payload


def read_client_frames(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """Unmask ``count`` frames the client sent."""
    buf = b""
    frames: list[tuple[int, bytes]] = []
    sock.settimeout(5)
    while len(frames) < count:
        buf += sock.recv(1 << 16)
        while len(buf) >= 2:
            size, head = buf[1] & 0x7F, 2
            if size == 126:
                size, head = int.from_bytes(buf[2:4], "big"), 4
            elif size == 127:
                size, head = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < head + 4 + size:
                break
            mask = buf[head:head + 4]
            body = bytes(b ^ mask[i % 4] for i, b in enumerate(buf[head + 4:head + 4 + size]))
            frames.append((buf[0] & 0x0F, body))
            buf = buf[head + 4 + size:]
    return frames


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


def channel_over(sock: socket.socket, protocol: str = ex.V5_PROTOCOL) -> frames.FrameChannel:
    return frames.FrameChannel(FakeWebSocket(sock, protocol))  # type: ignore[arg-type]


def test_frames_fragments_pings_and_close(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    channel = channel_over(ours)
    big = os.urandom(70000)
    theirs.sendall(
        server_frame(1, b"")  # the kubelet's empty greeting
        + server_frame(1, big)
        + server_frame(2, b"frag-", fin=False) + server_frame(None, b"ment", opcode=0x0)
        + server_frame(None, b"hi", opcode=0x9))
    messages: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 5
    while len(messages) < 3 and time.monotonic() < deadline:
        messages += channel.pump(1)
    assert messages[0] == (1, big)
    assert b"".join(d for c, d in messages[1:] if c == 2) == b"frag-ment"
    channel.pump(0)  # flush the pong
    assert read_client_frames(theirs, 1) == [(0xA, b"hi")]
    theirs.sendall(server_frame(None, b"\x03\xe8", opcode=0x8))
    while not channel.peer_closed and time.monotonic() < deadline:
        assert channel.pump(1) == []
    assert channel.peer_closed
    channel.close()  # answers the close
    assert read_client_frames(theirs, 1) == [(0x8, b"\x03\xe8")]


def run_session(pair: tuple[socket.socket, socket.socket], frames: bytes, *,
                stdin: bytes | None = None, close: bool = False,
                deadline: float | None = None) -> tuple[Outcome, bytes, list[Any]]:
    ours, theirs = pair
    channel = channel_over(ours)
    out = OutputStream(1 << 20, None, None, TAG)
    err = OutputStream(1 << 20, None, None, TAG)
    kills: list[Any] = []
    source = StdinSource.open(stdin) if stdin is not None else None
    session = ex.channel_session(channel, out, err, source, lambda *a: kills.append(a))
    theirs.sendall(frames)
    if close:
        theirs.shutdown(socket.SHUT_WR)
    outcome = session.run(deadline)
    return outcome, out.value(), kills


def test_status_ends_the_session(pair: tuple[socket.socket, socket.socket]) -> None:
    status = {"status": "Failure", "reason": "NonZeroExitCode",
              "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}
    frames = (server_frame(1, marker("G", 7) + b"out") + server_frame(1, marker("X", 3))
              + server_frame(2, marker("X", 3)) + server_frame(3, json.dumps(status).encode()))
    outcome, out, _ = run_session(pair, frames)
    assert (outcome, out) == (Outcome(3, timed_out=False), b"out")


def test_markers_end_the_session_when_no_status_comes(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    frames = server_frame(1, b"done" + marker("X", 0)) + server_frame(2, marker("X", 0))
    started = time.monotonic()
    outcome, out, _ = run_session(pair, frames)
    assert ex.STATUS_GRACE <= time.monotonic() - started < ex.STATUS_GRACE + 1
    assert (outcome, out) == (Outcome(0, timed_out=False), b"done")


def test_a_stream_closed_without_status_is_an_error(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    with pytest.raises(ExecProtocolError):
        run_session(pair, server_frame(1, b"partial"), close=True)


def test_the_in_pod_watchdog_reports_a_timeout(pair: tuple[socket.socket, socket.socket]) -> None:
    frames = server_frame(1, marker("G", 9) + marker("K", 137)) + server_frame(2, marker("K", 137))
    outcome, _, _ = run_session(pair, frames)
    assert outcome == Outcome(137, timed_out=True)


def test_client_deadline_kills_the_group(pair: tuple[socket.socket, socket.socket]) -> None:
    _, theirs = pair

    def answer_the_kill() -> None:  # the wrapper's report once the group is dead
        time.sleep(0.3)
        theirs.sendall(server_frame(1, marker("X", 137)) + server_frame(2, marker("X", 137)))

    threading.Thread(target=answer_the_kill).start()
    outcome, out, kills = run_session(pair, server_frame(1, marker("G", 11) + b"so far"),
                                      deadline=time.monotonic() + 0.1)
    assert kills == [("G", 11)]
    assert (outcome, out) == (Outcome(137, timed_out=True), b"so far")


def test_stdin_is_sent_then_closed_on_v5(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    channel = channel_over(ours)
    out = OutputStream(100, None, None, TAG)
    err = OutputStream(100, None, None, TAG)
    session = ex.channel_session(channel, out, err, StdinSource.open(b"x" * 100_000),
                          lambda *a: None)
    session._step(0.5)
    session._step(0.5)
    frames = read_client_frames(theirs, 3)
    assert [(op, body[0]) for op, body in frames] == [(0x2, 0), (0x2, 0), (0x2, 255)]
    assert sum(len(body) - 1 for _, body in frames[:2]) == 100_000
    assert frames[2][1] == b"\xff\x00"


# -- the wrapper under the local shells -----------------------------------------------------
# The pod's /bin/sh is dash (Debian images), busybox ash (busybox, Alpine) or bash; each one
# found here runs the wrapper as an exec would, with pipes for stdio.

SHELLS = [pytest.param(argv, id=argv[0].rsplit("/", 1)[-1])
          for argv in (["/bin/sh"], ["/usr/bin/dash"], ["/bin/bash"], ["/usr/bin/busybox", "sh"])
          if os.path.exists(argv[0])]


def wrapper(shell: list[str], timeout: int, argv: list[str], *, bound: int | None = None,
            env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*shell, "-c", WRAPPER, "sandboxkit-exec", NONCE, str(timeout),
         "" if bound is None else str(bound), *argv],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def read_until_end(stream: Any, deadline: float = 10) -> bytes:
    """Read a pipe until the end marker (a background child may hold it open)."""
    end = re.compile(re.escape(TAG) + rb"[XK]\d+\n")
    data = b""
    until = time.monotonic() + deadline
    while not end.search(data):
        assert time.monotonic() < until, data
        chunk = os.read(stream.fileno(), 65536)
        if not chunk:
            break
        data += chunk
    return data


def local_processes(needle: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/cmdline", "rb") as f:
                if f.read().replace(b"\0", b" ").strip() == needle.encode():
                    found.append(int(entry))
    return found


@pytest.mark.parametrize("shell", SHELLS)
def test_wrapper_reports_the_exit_status_after_the_output(shell: list[str]) -> None:
    proc = wrapper(shell, 0, ["sh", "-c", "printf out; printf err >&2; exit 7"])
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 7
    value, markers, _ = feed_split(out, [])
    assert value == b"out" and markers[0][0] == "G" and markers[1] == ("X", 7)
    assert feed_split(err, [])[0:2] == (b"err", [("X", 7)])


@pytest.mark.parametrize("shell", SHELLS)
def test_wrapper_is_not_held_by_a_background_child(shell: list[str]) -> None:
    proc = wrapper(shell, 0, ["sh", "-c", "sleep 7431 & echo done"])
    try:
        assert proc.wait(timeout=5) == 0  # the pipes stay open: sleep holds them
        assert feed_split(read_until_end(proc.stdout), [])[0] == b"done\n"
        until = time.monotonic() + 5  # the child may not have exec'd sleep yet
        while not local_processes("sleep 7431") and time.monotonic() < until:
            time.sleep(0.01)
        assert local_processes("sleep 7431")  # it lives on
    finally:
        for pid in local_processes("sleep 7431"):
            os.kill(pid, 9)
        proc.communicate()


@pytest.mark.parametrize("shell", SHELLS)
def test_wrapper_bounds_stdin_without_eof(shell: list[str]) -> None:
    proc = wrapper(shell, 0, ["wc", "-c"], bound=5)
    assert proc.stdin is not None
    proc.stdin.write(b"12345")
    proc.stdin.flush()  # and never closed, as on a v4 stream
    assert proc.wait(timeout=5) == 0
    assert feed_split(read_until_end(proc.stdout), [])[0].strip() == b"5"
    proc.communicate()


@pytest.mark.parametrize("setsid", [True, False], ids=["group", "tree"])
@pytest.mark.parametrize("shell", SHELLS)
def test_wrapper_watchdog_kills_everything_the_command_started(
    shell: list[str], setsid: bool, tmp_path: Any,
) -> None:
    env = dict(os.environ)
    if not setsid:  # a PATH with the tools the test needs, but no setsid
        for tool in ("sleep", "sh", "head"):
            os.symlink(shutil.which(tool) or tool, tmp_path / tool)
        env["PATH"] = str(tmp_path)
    proc = wrapper(shell, 1, ["sh", "-c", "sleep 7432 & sleep 7433; echo never"], env=env)
    started = time.monotonic()
    out, _ = proc.communicate(timeout=10)
    assert 0.9 < time.monotonic() - started < 5
    value, markers, _ = feed_split(out, [])
    assert value == b""
    assert markers[0][0] == ("G" if setsid else "T")
    assert markers[1] == ("K", 137)
    assert not local_processes("sleep 7432") and not local_processes("sleep 7433")


@pytest.mark.parametrize("marker_later", [False, True], ids=["same-pump", "later"])
def test_interrupt_from_a_callback_still_kills(pair: tuple[socket.socket, socket.socket],
                                               marker_later: bool) -> None:
    """The command may print before the wrapper reports its process group; a callback
    raising on that output must neither lose the marker nor be called again."""
    ours, theirs = pair
    calls: list[bytes] = []

    def interrupt(data: bytes) -> None:
        calls.append(data)
        raise KeyboardInterrupt

    out = OutputStream(100, interrupt, None, TAG)
    err = OutputStream(100, None, None, TAG)
    kills: list[Any] = []
    session = ex.channel_session(channel_over(ours), out, err, None, lambda *a: kills.append(a))
    if marker_later:
        theirs.sendall(server_frame(1, b"go\n"))
        threading.Timer(0.2, lambda: theirs.sendall(
            server_frame(1, b"more" + marker("G", 5)))).start()
    else:
        theirs.sendall(server_frame(1, b"go\n") + server_frame(1, marker("G", 5)))
    with pytest.raises(KeyboardInterrupt):
        session.run(None)
    assert kills == [("G", 5)]
    assert calls == [b"go\n"]


@pytest.mark.parametrize("shell", SHELLS)
def test_wrapper_never_waits_for_its_watchdog(shell: list[str]) -> None:
    """A fast command with a timeout: the wrapper stops the watchdog at once. The watchdog's
    ``sleep`` must be killed with SIGKILL: a SIGTERM sent between its fork and its exec
    reaches the shell's trap handler in the child, is lost with the exec, and the wrapper
    then waited out the whole timeout (seen once in 300 runs with dash)."""
    try:
        for _ in range(150):
            proc = wrapper(shell, 617, ["true"])
            out, _ = proc.communicate(timeout=5)
            assert proc.returncode == 0
            assert feed_split(out, [])[1][-1] == ("X", 0)
    finally:
        for pid in local_processes("sleep 617"):  # only if a TERM raced the fork (harmless)
            os.kill(pid, 9)
