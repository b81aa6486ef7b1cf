"""The session pool (sandboxkit.backends.session_pool) over a local stand-in for an exec stream.

Each session is the real loop in a local ``/bin/sh`` subprocess (its pipes play the exec
stream), so reuse, replacement of a dead session, the one-exec fallback, a session lost
under a command and the kill on timeout are checked without a server.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sandboxkit.backends.loop import loop_argv
from sandboxkit.backends.session import STDERR, STDOUT
from sandboxkit.backends.session_pool import SessionPool
from sandboxkit.backends.wrapper import new_nonce
from sandboxkit.errors import CommandTimeout, SessionLost
from sandboxkit.models import CommandResult

LIMIT = 1 << 20


class LocalSession:
    """A :class:`sandboxkit.backends.session_pool.Session` on a local loop process."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            loop_argv(new_nonce()), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env)
        assert self.process.stdout is not None and self.process.stderr is not None
        self._pipes = {self.process.stdout.fileno(): STDOUT,
                       self.process.stderr.fileno(): STDERR}
        self._open = set(self._pipes)

    @property
    def dead(self) -> bool:
        return not self._open

    def send(self, data: bytes) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(data)
            self.process.stdin.flush()
        except BrokenPipeError:
            pass

    def pump(self, timeout: float | None) -> list[tuple[int, bytes]]:
        if not self._open:
            return []
        readable, _, _ = select.select(list(self._open), [], [], timeout)
        frames = []
        for fd in readable:
            data = os.read(fd, 1 << 16)
            if data:
                frames.append((self._pipes[fd], data))
            else:
                self._open.discard(fd)
        return frames

    def failure(self) -> None:
        return None

    def close(self) -> None:
        """End the loop's stdin, so it cleans up after itself, as a closed exec stream does;
        kill it only if it does not end."""
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Harness:
    """A pool of local sessions that records what it opened and what fell back."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.opened: list[LocalSession] = []
        self.fallbacks: list[list[str]] = []
        self.env = env
        self.pool = SessionPool(self._open, self._kill, self._fallback)

    def _open(self) -> LocalSession:
        session = LocalSession(self.env)
        self.opened.append(session)
        return session

    @staticmethod
    def _kill(kind: str, pid: int) -> None:
        assert kind == "G"
        os.killpg(pid, signal.SIGKILL)

    def _fallback(self, argv: list[str], **options: Any) -> CommandResult:
        self.fallbacks.append(argv)
        return CommandResult(command=options["command_text"], exit_code=0,
                             stdout_bytes=b"one exec", stderr_bytes=b"", duration=0.0)

    def sh(self, script: str, **options: Any) -> CommandResult:
        return self.pool.run(["/bin/sh", "-c", script], output_limit=LIMIT,
                             **{"timeout": 30, **options})


@pytest.fixture
def harness(tmp_path: os.PathLike[str]) -> Iterator[Harness]:
    # A loop killed by a test leaves its private directory behind: in tmp_path, not /tmp.
    made = Harness(env={**os.environ, "TMPDIR": str(tmp_path)})
    yield made
    made.pool.close()
    for session in made.opened:
        session.close()


def test_commands_reuse_one_session(harness: Harness) -> None:
    results = [harness.sh(f"echo {i}; echo e{i} >&2; exit {i}") for i in range(12)]
    assert [(r.stdout, r.stderr, r.exit_code) for r in results] == [
        (f"{i}\n", f"e{i}\n", i) for i in range(12)]
    assert len(harness.opened) == 1 and not harness.fallbacks


def test_a_dead_idle_session_is_replaced(harness: Harness) -> None:
    harness.sh("true")
    harness.opened[0].process.kill()
    harness.opened[0].process.wait()
    assert harness.sh("echo again").stdout == "again\n"
    assert len(harness.opened) == 2


def test_a_session_lost_under_a_command_raises_with_the_output_so_far(
    harness: Harness,
) -> None:
    harness.sh("true")
    loop = harness.opened[0].process.pid
    # No timeout, so no watchdog: a watchdog subshell keeps the shell's saved copy of the
    # loop's stdout open, and the stream would end only when it does.
    with pytest.raises(SessionLost) as caught:
        harness.sh(f"echo started; kill -9 {loop}; sleep 1", timeout=None)
    assert caught.value.result.stdout == "started\n"
    assert caught.value.result.exit_code == -1
    assert harness.sh("echo fresh").stdout == "fresh\n"


def test_timeout_kills_the_group_and_keeps_the_session(harness: Harness) -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as caught:
        harness.sh("echo go; exec sleep 30", timeout=0.5)
    assert caught.value.result.stdout == "go\n"
    assert time.monotonic() - started < 5
    assert harness.sh("echo next").stdout == "next\n"
    assert len(harness.opened) == 1


def test_a_loop_that_cannot_run_falls_back_for_good(tmp_path: os.PathLike[str]) -> None:
    harness = Harness(env={"PATH": str(tmp_path)})  # no mkfifo: the loop exits at once
    try:
        assert harness.sh("echo hi").stdout == "one exec"
        assert not harness.pool.supported
        assert harness.sh("echo again").stdout == "one exec"
        assert len(harness.opened) == 1 and len(harness.fallbacks) == 2
    finally:
        for session in harness.opened:
            session.close()


def test_closed_pool_runs_one_exec_per_command(harness: Harness) -> None:
    harness.sh("true")
    harness.pool.close()
    assert harness.sh("echo x").stdout == "one exec"
