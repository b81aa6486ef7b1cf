"""The persistent session's loop (sandboxkit.backends.loop), run by real local shells.

No cluster: the loop runs under ``/bin/sh`` (and busybox ``sh`` and bash where installed)
as a subprocess whose pipes stand in for the exec stream, and the client side is the same
code the Kubernetes session uses (encode_request, BeginFilter, OutputStream, ACK).
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandboxkit.backends.loop import (
    ACK,
    UNSUPPORTED,
    BeginFilter,
    begin_marker,
    encode_request,
    loop_argv,
)
from sandboxkit.backends.wrapper import OutputStream, marker_tag, new_nonce

SHELLS = [pytest.param(["/bin/sh"], id="sh")]
if shutil.which("busybox"):
    SHELLS.append(pytest.param([str(shutil.which("busybox")), "sh"], id="busybox"))
if shutil.which("bash"):
    SHELLS.append(pytest.param([str(shutil.which("bash"))], id="bash"))

# Prints each argument NUL-terminated: an exact picture of the argv the command received.
PRINT_ARGV = ["/bin/sh", "-c", 'for a; do printf "%s\\000" "$a"; done', "argv"]


class LocalLoop:
    """The loop in a local subprocess, driven like a session: one request, the output up
    to both end markers, then the ack."""

    def __init__(self, shell: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [*shell, *loop_argv(new_nonce())[1:]], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        assert self.process.stdout is not None and self.process.stderr is not None
        for pipe in (self.process.stdout, self.process.stderr):
            os.set_blocking(pipe.fileno(), False)

    def run(self, argv: Sequence[str], watchdog: int = 0,
            limit: float = 20.0) -> tuple[bytes, bytes, int]:
        process = self.process
        assert process.stdin is not None and process.stdout is not None
        assert process.stderr is not None
        nonce = new_nonce()
        streams = {pipe: (BeginFilter(nonce), OutputStream(1 << 24, None, None,
                                                          marker_tag(nonce)))
                   for pipe in (process.stdout, process.stderr)}
        process.stdin.write(encode_request(nonce, watchdog, argv))
        process.stdin.flush()
        ends: list[int] = []
        until = time.monotonic() + limit
        while not all(stream.ended for _, stream in streams.values()):
            readable, _, _ = select.select(list(streams), [], [], until - time.monotonic())
            assert readable, "the loop did not finish the command"
            for pipe in readable:
                data = pipe.read(1 << 16)
                assert data, f"the loop exited: {process.wait()}"
                begin, stream = streams[pipe]
                ends += [value for kind, value in stream.feed(begin(data))
                         if kind in ("X", "K")]
        process.stdin.write(ACK)
        process.stdin.flush()
        out, err = (streams[pipe][1].value() for pipe in (process.stdout, process.stderr))
        return out, err, ends[0]

    def close(self) -> int:
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait(10)


@pytest.fixture(params=SHELLS)
def loop(request: pytest.FixtureRequest) -> Iterator[LocalLoop]:
    session = LocalLoop(request.param)
    yield session
    assert session.close() == 0


@pytest.fixture(scope="module")
def shared_loop() -> Iterator[LocalLoop]:
    """One loop for every hypothesis example: also many commands through one session."""
    session = LocalLoop(["/bin/sh"])
    yield session
    assert session.close() == 0


ARGUMENT = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ARGUMENT, max_size=6))
def test_any_argv_round_trips_through_the_loop(shared_loop: LocalLoop,
                                               args: list[str]) -> None:
    out, err, code = shared_loop.run([*PRINT_ARGV, *args])
    assert (code, err) == (0, b"")
    assert out == b"".join(arg.encode() + b"\0" for arg in args)


def test_request_encoding_is_lines_per_argument() -> None:
    assert encode_request("n", 3, ["a", "b\nc\n", ""]) == b"n 3 3\n1\na\n3\nb\nc\n\n1\n\n"
    with pytest.raises(ValueError):
        encode_request("n", 0, ["a\0b"])
    with pytest.raises(ValueError):
        encode_request("n", 0, [])


def test_begin_filter_drops_what_precedes_the_marker_even_split() -> None:
    begin = BeginFilter("abc")
    whole = b"leftover" + begin_marker("abc") + b"mine"
    kept = b"".join(begin(whole[i:i + 1]) for i in range(len(whole)))
    assert kept == b"mine" and begin.begun
    assert begin(b"more") == b"more"


def test_exit_codes_streams_and_binary(loop: LocalLoop) -> None:
    assert loop.run(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"]) == (
        b"out\n", b"err\n", 3)
    binary = loop.run(["/bin/sh", "-c", r"printf '\000\001\377\376abc'"])
    assert binary == (b"\x00\x01\xff\xfeabc", b"", 0)
    assert loop.run(["/bin/sh", "-c", "kill -9 $$"])[2] == 137
    assert loop.run(["no-such-command-sandboxkit"])[2] == 127


def test_commands_never_read_the_session_stdin(loop: LocalLoop) -> None:
    assert loop.run(["/bin/sh", "-c", "cat; echo after"]) == (b"after\n", b"", 0)
    assert loop.run(["/bin/sh", "-c", "read x; echo \"[$x]\""]) == (b"[]\n", b"", 0)
    assert loop.run(["echo", "still", "reading", "requests"])[0] == b"still reading requests\n"


def test_background_output_does_not_leak_into_later_commands(loop: LocalLoop) -> None:
    started = time.monotonic()
    out, _, code = loop.run(
        ["/bin/sh", "-c", "(sleep 0.3; echo LEAK; echo LEAK >&2) & echo first"])
    assert (out, code) == (b"first\n", 0)
    assert time.monotonic() - started < 2
    for _ in range(10):  # past the background child's writes, and past a FIFO batch
        out, err, _ = loop.run(["/bin/sh", "-c", "sleep 0.05; echo later; echo e >&2"])
        assert (out, err) == (b"later\n", b"e\n")


def test_watchdog_kills_the_command(loop: LocalLoop) -> None:
    started = time.monotonic()
    out, _, code = loop.run(["/bin/sh", "-c", "echo go; exec sleep 30"], watchdog=1)
    assert out == b"go\n" and code == 137
    assert time.monotonic() - started < 10


def test_missing_tools_exit_unsupported(tmp_path: os.PathLike[str]) -> None:
    session = LocalLoop(["/bin/sh"], env={"PATH": str(tmp_path)})
    assert session.close() == UNSUPPORTED


def test_quick_commands_with_a_watchdog_never_hang(loop: LocalLoop) -> None:
    """The wrapper ends a quick command's watchdog with TERM right after forking it: the
    loop must not trap TERM, or a TERM reaching the fork before it reset the trap is lost
    and the wrapper waits on the watchdog for good (seen about once in a thousand)."""
    for _ in range(400):
        assert loop.run(["true"], watchdog=600, limit=10)[2] == 0
