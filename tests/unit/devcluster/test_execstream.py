"""execstream against real processes and real WebSocket clients.

The server runs in a thread with its own event loop; the clients are websocket-client
speaking the channel protocol frame by frame, and the official Python client's WSClient.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import websocket
from aiohttp import web
from kubernetes.client import Configuration
from kubernetes.stream.ws_client import WSClient
from multidict import MultiDict

from sandboxkit.devcluster import errors
from sandboxkit.devcluster.execstream import ExecOptions, parse_exec_options, serve_exec

pytestmark = pytest.mark.timeout(60)

PY = sys.executable
V5, V4 = "v5.channel.k8s.io", "v4.channel.k8s.io"
REFUSED = "--refused-by-the-kubelet--"


# -- server ---------------------------------------------------------------------------------


class Server:
    """An aiohttp app whose /exec route runs local processes through serve_exec."""

    def __init__(self) -> None:
        self.processes: list[asyncio.subprocess.Process] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner, self.port = self.call(self._start())

    def call(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)  # type: ignore[arg-type]

    async def _start(self) -> tuple[web.AppRunner, int]:
        @web.middleware
        async def status(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            try:
                return await handler(request)
            except errors.ApiError as exc:
                return web.json_response(exc.status(), status=exc.code)

        app = web.Application(middlewares=[status])
        app.router.add_route("GET", "/exec", self._exec)
        app.router.add_route("POST", "/exec", self._exec)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, runner.addresses[0][1]

    async def _spawn(self, argv: list[str], tty: bool) -> asyncio.subprocess.Process:
        if argv == [REFUSED]:  # what the kubelet answers for a container that is not running
            message = 'unable to upgrade connection: container not found ("main")'
            raise errors.ApiError(500, "InternalError", f"Internal error occurred: {message}",
                                  {"causes": [{"message": message}]})
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        return await serve_exec(request, self._spawn, parse_exec_options(request.query))

    def url(self, command: list[str], scheme: str = "ws", **flags: str) -> str:
        query = MultiDict([("command", c) for c in command])
        query.extend({"stdout": "true", "stderr": "true", **flags})
        return f"{scheme}://127.0.0.1:{self.port}/exec?{urlencode(list(query.items()))}"

    def close(self) -> None:
        for process in self.processes:  # background children the tests left behind
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        self.call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    try:
        yield srv
    finally:
        srv.close()


# -- a frame-level client -------------------------------------------------------------------


def connect(url: str, protocols: list[str] | None = None) -> websocket.WebSocket:
    return websocket.create_connection(url, subprotocols=protocols or [V5], timeout=20)


def collect(ws: websocket.WebSocket) -> tuple[dict[int, bytes], list[bytes]]:
    """Read frames until the server closes: channel -> concatenated data, plus raw frames."""
    channels: dict[int, bytes] = {}
    frames: list[bytes] = []
    while True:
        opcode, data = ws.recv_data()
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return channels, frames
        frames.append(data)
        channels[data[0]] = channels.get(data[0], b"") + data[1:]


def run(server: Server, command: list[str], protocol: str = V5, **flags: str) -> dict[int, bytes]:
    ws = connect(server.url(command, **flags), [protocol])
    try:
        assert ws.subprotocol == protocol
        return collect(ws)[0]
    finally:
        ws.close()


def status_of(channels: dict[int, bytes]) -> dict[str, Any]:
    return json.loads(channels[3])


# -- options --------------------------------------------------------------------------------


def test_parse_options_converts_flags_as_the_api_server_does() -> None:
    query = MultiDict(
        [("command", "sh"), ("command", "-c"), ("command", "echo"), ("stdin", ""),
         ("stdout", "1"), ("stderr", "FALSE"), ("tty", "0"), ("container", "main")]
    )
    assert parse_exec_options(query) == ExecOptions(
        ("sh", "-c", "echo"), "main", stdin=True, stdout=True, stderr=False, tty=False
    )


def test_parse_options_drops_stderr_for_a_terminal() -> None:
    query = MultiDict([("command", "sh"), ("stdout", "true"), ("stderr", "true"), ("tty", "yes")])
    options = parse_exec_options(query)
    assert options.tty and options.stdout and not options.stderr
    with pytest.raises(errors.ApiError) as caught:
        parse_exec_options(MultiDict([("command", "sh"), ("stderr", "true"), ("tty", "true")]))
    assert caught.value.message == "you must specify at least 1 of stdin, stdout, stderr"


def test_parse_options_errors() -> None:
    with pytest.raises(errors.ApiError) as caught:
        parse_exec_options(MultiDict([("command", "ls"), ("stdout", "false")]))
    assert (caught.value.code, caught.value.reason) == (400, "BadRequest")
    assert caught.value.message == "you must specify at least 1 of stdin, stdout, stderr"
    with pytest.raises(errors.ApiError) as caught:
        parse_exec_options(MultiDict([("stdout", "true")]))
    assert caught.value.code == 400
    assert parse_exec_options(MultiDict([("stdout", "true")]), attach=True).command == ()


# -- streams and status ---------------------------------------------------------------------


def test_stdout_and_stderr_are_separate_and_success_is_reported(server: Server) -> None:
    ws = connect(server.url(["sh", "-c", "echo out; echo err >&2"]))
    channels, frames = collect(ws)
    ws.close()
    assert frames[0] == b"\x01"  # the empty announcement on the lowest output channel
    assert channels[1] == b"out\n"
    assert channels[2] == b"err\n"
    assert channels[3] == b'{"metadata":{},"status":"Success"}'


def test_announcement_goes_to_the_error_channel_without_output_streams(server: Server) -> None:
    ws = connect(server.url(["true"], stdout="false", stderr="false", stdin="true"))
    channels, frames = collect(ws)
    ws.close()
    assert frames[0] == b"\x03"
    assert status_of(channels)["status"] == "Success"


@pytest.mark.parametrize("code", [1, 3, 127])
def test_non_zero_exit_codes_v4_carry_the_kubelet_wording(server: Server, code: int) -> None:
    channels = run(server, ["sh", "-c", f"exit {code}"], protocol=V4)
    assert channels[3] == (
        '{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit '
        f'code: error executing command [sh -c exit {code}], exit code {code}","reason":'
        f'"NonZeroExitCode","details":{{"causes":[{{"reason":"ExitCode","message":"{code}"}}]}}}}'
    ).encode()


def test_non_zero_exit_v5_carries_the_translator_wording(server: Server) -> None:
    status = status_of(run(server, ["sh", "-c", "nosuchcommand-xyz"]))
    assert status == {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: "
        "command terminated with exit code 127",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "127"}]},
    }


def test_signalled_process_reports_128_plus_signal(server: Server) -> None:
    status = status_of(run(server, ["sh", "-c", "kill -9 $$"]))
    assert status["details"]["causes"][0]["message"] == "137"


def test_json_is_escaped_like_go(server: Server) -> None:
    raw = run(server, ["sh", "-c", "true && exit 2"], protocol=V4)[3]
    assert b"true \\u0026\\u0026 exit 2" in raw


def test_output_is_binary_safe(server: Server) -> None:
    script = "import sys; sys.stdout.buffer.write(bytes(range(256)) * 3)"
    channels = run(server, [PY, "-c", script])
    assert channels[1] == bytes(range(256)) * 3


def test_five_mebibytes_arrive_intact(server: Server) -> None:
    script = (
        "import sys\n"
        "for i in range(5 * 1024):\n"
        "    sys.stdout.buffer.write(i.to_bytes(4, 'big') * 256)\n"
    )
    expected = b"".join(i.to_bytes(4, "big") * 256 for i in range(5 * 1024))
    ws = connect(server.url([PY, "-c", script]))
    channels, frames = collect(ws)
    ws.close()
    assert len(channels[1]) == 5 << 20
    assert channels[1] == expected
    assert max(len(f) for f in frames) <= (64 << 10) + 1  # chunked, not buffered whole


def test_stdin_reaches_eof_with_the_v5_close_signal(server: Server) -> None:
    ws = connect(server.url(["cat"], stdin="true"))
    ws.send_binary(b"\x00hello ")
    ws.send_binary(b"\x00world")
    ws.send_binary(b"\xff\x00")
    channels, _ = collect(ws)
    ws.close()
    assert channels[1] == b"hello world"
    assert status_of(channels)["status"] == "Success"


def test_large_stdin_round_trips(server: Server) -> None:
    payload = os.urandom(3 << 20)
    ws = connect(server.url(["cat"], stdin="true"))
    done: dict[int, bytes] = {}
    reader = threading.Thread(target=lambda: done.update(collect(ws)[0]))
    reader.start()
    for offset in range(0, len(payload), 100_000):
        ws.send_binary(b"\x00" + payload[offset:offset + 100_000])
    ws.send_binary(b"\xff\x00")
    reader.join(30)
    ws.close()
    assert done[1] == payload


def test_resize_frames_without_a_terminal_size_are_ignored(server: Server) -> None:
    """This spawn's processes have pipes, not a terminal (no ``resize``): the frame is
    dropped and the stream goes on; test_runtime and test_shell cover a real terminal."""
    ws = connect(server.url(["cat"], stdin="true", tty="true"))
    ws.send_binary(b"\x04" + json.dumps({"Width": 80, "Height": 24}).encode())
    ws.send_binary(b"\x00abc")
    ws.send_binary(b"\xff\x00")
    channels, _ = collect(ws)
    ws.close()
    assert channels[1] == b"abc"
    assert status_of(channels)["status"] == "Success"


def test_tty_merges_stderr_into_stdout(server: Server) -> None:
    channels = run(server, ["sh", "-c", "echo out; sleep 0.05; echo err >&2"], tty="true")
    assert channels[1] == b"out\nerr\n"
    assert 2 not in channels


def test_background_child_does_not_hold_the_session(server: Server) -> None:
    started = time.monotonic()
    channels = run(server, ["sh", "-c", "sleep 30 & echo done"])
    assert time.monotonic() - started < 3
    assert channels[1] == b"done\n"
    assert status_of(channels)["status"] == "Success"


def test_output_written_before_exit_survives_a_background_child(server: Server) -> None:
    script = "import sys; sys.stdout.buffer.write(b'x' * (1 << 20))"
    channels = run(server, ["sh", "-c", f"sleep 30 & {PY} -c \"{script}\"; exit 4"])
    assert channels[1] == b"x" * (1 << 20)
    assert status_of(channels)["details"]["causes"][0]["message"] == "4"


def _dead(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
    except (FileNotFoundError, IndexError):
        return True


def test_client_disconnect_kills_the_process_group(server: Server) -> None:
    ws = connect(server.url(["sh", "-c", "sleep 60 & echo $!; sleep 60"]))
    assert ws.recv_data()[1] == b"\x01"
    child = int(ws.recv_data()[1][1:])
    ws.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (
        server.processes[0].returncode is not None and _dead(child)
    ):
        time.sleep(0.05)
    assert server.processes[0].returncode == -signal.SIGKILL
    assert _dead(child)


def test_dropped_connection_is_noticed_while_stdin_is_backpressured(server: Server) -> None:
    ws = connect(server.url(["sleep", "60"], stdin="true"))
    ws.recv_data()
    with contextlib.suppress(OSError, websocket.WebSocketException):
        ws.sock.settimeout(1)
        for _ in range(64):  # far more than the pipe holds: the server stops reading
            ws.send_binary(b"\x00" + b"y" * (256 << 10))
    ws.sock.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and server.processes[0].returncode is None:
        time.sleep(0.05)
    assert server.processes[0].returncode == -signal.SIGKILL


def test_start_failure_is_an_internal_error(server: Server) -> None:
    status = status_of(run(server, ["/nonexistent/binary"], protocol=V4))
    assert status["reason"] == "InternalError" and status["code"] == 500
    assert status["message"].startswith(
        "Internal error occurred: error executing command in container: failed to exec in "
        'container: failed to start exec "'
    )
    v5 = status_of(run(server, ["/nonexistent/binary"]))
    assert v5["message"].startswith("Internal error occurred: Internal error occurred: ")


def test_refused_stream_reports_the_api_error_as_it_is(server: Server) -> None:
    for protocol in (V5, V4):
        status = status_of(run(server, [REFUSED], protocol=protocol))
        assert status == {
            "metadata": {}, "status": "Failure", "code": 500, "reason": "InternalError",
            "message": 'Internal error occurred: unable to upgrade connection: container not '
                       'found ("main")',
            "details": {"causes": [{"message": 'unable to upgrade connection: container not '
                                               'found ("main")'}]}}


# -- protocol negotiation -------------------------------------------------------------------


def test_v5_wins_wherever_it_is_listed(server: Server) -> None:
    ws = connect(server.url(["true"]), [V4, "channel.k8s.io", V5])
    assert ws.subprotocol == V5
    ws.close()


def test_kubelet_protocols_pick_the_first_listed(server: Server) -> None:
    ws = connect(server.url(["true"]), ["bogus", V4, "channel.k8s.io"])
    assert ws.subprotocol == V4
    ws.close()


def test_base64_protocol(server: Server) -> None:
    ws = connect(server.url(["cat"], stdin="true"), ["v4.base64.channel.k8s.io"])
    assert ws.subprotocol == "v4.base64.channel.k8s.io"
    opcode, first = ws.recv_data()
    assert (opcode, first) == (websocket.ABNF.OPCODE_TEXT, b"1")
    ws.send("0" + base64.b64encode(b"\x00\xffbin").decode())
    output = b""
    while not output:
        opcode, data = ws.recv_data()
        assert opcode == websocket.ABNF.OPCODE_TEXT and data[:1] == b"1"
        output = base64.b64decode(data[1:])
    assert output == b"\x00\xffbin"
    ws.close()  # v4 cannot close stdin: leaving is the only way to end cat


def test_legacy_protocol_reports_failures_as_plain_text(server: Server) -> None:
    channels = run(server, ["sh", "-c", "exit 5"], protocol="channel.k8s.io")
    assert channels[3] == (
        b"command terminated with non-zero exit code: error executing command "
        b"[sh -c exit 5], exit code 5"
    )
    assert 3 not in run(server, ["true"], protocol="channel.k8s.io")


def test_no_subprotocol_is_served_as_the_legacy_protocol(server: Server) -> None:
    ws = websocket.create_connection(server.url(["sh", "-c", "echo hi; exit 1"]), timeout=20)
    assert not ws.subprotocol
    channels, _ = collect(ws)
    ws.close()
    assert channels[1] == b"hi\n"
    assert channels[3].startswith(b"command terminated with non-zero exit code: ")


def test_unsupported_subprotocol_is_refused_and_the_server_keeps_serving(server: Server) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        connect(server.url(["true"]), ["v3.channel.k8s.io", "foo"])
    assert caught.value.status_code == 403
    assert caught.value.resp_body in (None, b"")
    assert status_of(run(server, ["true"]))["status"] == "Success"


def _http(
    server: Server, method: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """A plain HTTP request (http.client keeps our Connection header; urllib replaces it)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        path = server.url(["true"], scheme="http").split(str(server.port), 1)[1]
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_plain_request_needs_an_upgrade(server: Server, method: str) -> None:
    code, _, body = _http(server, method)
    assert code == 400
    assert json.loads(body) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Upgrade request required", "reason": "BadRequest", "code": 400,
    }


def test_spdy_upgrade_is_refused_like_an_unsupported_protocol(server: Server) -> None:
    code, headers, body = _http(
        server,
        "POST",
        {"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
         "X-Stream-Protocol-Version": "v4.channel.k8s.io, v3.channel.k8s.io"},
    )
    assert code == 403
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert body == (
        b"unable to upgrade: unable to negotiate protocol: client supports "
        b"[v4.channel.k8s.io v3.channel.k8s.io], server accepts []\n"
    )


# -- the official Python client -------------------------------------------------------------


def _wsclient(url: str, headers: dict[str, str] | None = None) -> WSClient:
    return WSClient(Configuration(), url, headers, capture_all=True, binary=True)


def test_official_client_v5(server: Server) -> None:
    client = _wsclient(server.url(["sh", "-c", "cat; echo err >&2; exit 3"], stdin="true"))
    assert client.subprotocol == V5
    client.write_stdin(b"piped")
    client.close_channel(0)
    client.run_forever(timeout=20)
    assert client.read_stdout() == b"piped"
    assert client.read_stderr() == b"err\n"
    assert client.returncode == 3


def test_official_client_v4(server: Server) -> None:
    client = _wsclient(
        server.url(["sh", "-c", "echo hello"]), {"sec-websocket-protocol": V4}
    )
    assert client.subprotocol == V4
    client.run_forever(timeout=20)
    assert client.read_stdout() == b"hello\n"
    assert client.returncode == 0
