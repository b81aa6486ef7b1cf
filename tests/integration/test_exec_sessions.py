"""Persistent exec sessions (backends.session_pool, .kubernetes.sessions) on a live cluster.

The contract suite already runs whole in both modes; these tests target what only sessions
have: a session replaced when its stream dies, commands in flight when the pod goes,
background children of one command against the next, the pool under threads, the
one-exec fallback. A command learns its session from ``$PPID``: the loop's shell runs the
wrapper in-process, so the command's parent is the loop.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kubernetes import client
from sandbox_support import MakeSandbox

from sandboxkit import KubernetesSandbox
from sandboxkit.backends.session_pool import MAX_IDLE
from sandboxkit.errors import CommandTimeout, SandboxGone


@pytest.fixture
def sandbox(make_sandbox: MakeSandbox) -> Iterator[KubernetesSandbox]:
    sandbox = make_sandbox(exec_session=True).init()
    assert sandbox._sessions is not None
    yield sandbox


def loop_pid(sandbox: KubernetesSandbox) -> str:
    pid = sandbox.run_command("echo $PPID", check=True).stdout.strip()
    assert pid.isdigit()
    return pid


def one_exec(sandbox: KubernetesSandbox, cmd: str) -> str:
    """Run ``cmd`` through its own exec (stdin always takes that path), not a session."""
    return sandbox.run_command(cmd, stdin=b"", check=True).stdout


def test_commands_share_one_session(sandbox: KubernetesSandbox) -> None:
    first = loop_pid(sandbox)
    assert all(loop_pid(sandbox) == first for _ in range(20))  # past a FIFO batch (8)
    assert one_exec(sandbox, "echo $PPID").strip() != first


def test_session_killed_in_the_pod_is_replaced(sandbox: KubernetesSandbox) -> None:
    first = loop_pid(sandbox)
    one_exec(sandbox, f"kill -9 {first}")
    assert sandbox.run_command("echo again").stdout == "again\n"
    assert loop_pid(sandbox) != first


def test_session_cut_by_the_client_is_replaced(sandbox: KubernetesSandbox) -> None:
    first = loop_pid(sandbox)
    pool = sandbox._sessions
    assert pool is not None and len(pool._idle) == 1
    pool._idle[0]._channel._sock.shutdown(2)  # as a dropped connection or an idle timeout
    assert sandbox.run_command("echo again").stdout == "again\n"
    assert loop_pid(sandbox) != first


def test_pod_force_deleted_under_a_command_is_sandbox_gone_promptly(
    sandbox: KubernetesSandbox, api_client: Any, namespace: str,
) -> None:
    core = client.CoreV1Api(api_client)
    loop_pid(sandbox)  # the command below runs on an established session

    def delete_pod(_: bytes) -> None:
        core.delete_namespaced_pod(sandbox.pod_name, namespace, grace_period_seconds=0)

    started = time.monotonic()
    with pytest.raises(SandboxGone) as caught:
        sandbox.stream("echo started; sleep 120", on_stdout=delete_pod, on_stderr=None,
                       timeout=120)
    assert time.monotonic() - started < 30
    assert caught.value.result is not None and caught.value.result.stdout == "started\n"
    assert caught.value.result.exit_code == -1  # unknown, never invented
    with pytest.raises(SandboxGone):
        sandbox.run_command("true")


def test_background_output_does_not_leak_into_later_commands(
    sandbox: KubernetesSandbox,
) -> None:
    started = time.monotonic()
    result = sandbox.run_command(
        "(sleep 0.5; i=0; while [ $i -lt 20 ]; do echo LEAK; echo LEAK >&2; sleep 0.1; "
        "i=$((i+1)); done) & echo first")
    assert result.stdout == "first\n" and time.monotonic() - started < 5
    for _ in range(20):
        later = sandbox.run_command("echo later; echo e >&2; sleep 0.05")
        assert (later.stdout, later.stderr) == ("later\n", "e\n")


def test_binary_and_split_utf8_are_exact(sandbox: KubernetesSandbox) -> None:
    result = sandbox.run_command("head -c 3000000 /dev/urandom > /tmp/r; cat /tmp/r")
    remote = sandbox.run_command("sha256sum /tmp/r", check=True).stdout.split()[0]
    assert hashlib.sha256(result.stdout_bytes).hexdigest() == remote
    pieces: list[str] = []
    from sandboxkit.backends.wrapper import TextCallback

    text = sandbox.stream("i=0; while [ $i -lt 30000 ]; do printf 'é€😀'; i=$((i+1)); done",
                          on_stdout=TextCallback(pieces.append), on_stderr=None)
    assert text.stdout == "".join(pieces) == "é€😀" * 30000


def test_threads_get_a_session_each_and_the_pool_stays_small(
    sandbox: KubernetesSandbox,
) -> None:
    def run(i: int) -> tuple[str, str]:
        result = sandbox.run_command(f"sleep 0.3; echo {i}; echo $PPID >&2")
        return result.stdout, result.stderr.strip()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, range(32)))
    assert [out for out, _ in results] == [f"{i}\n" for i in range(32)]
    assert len({loop for _, loop in results}) <= 8
    assert sandbox._sessions is not None and len(sandbox._sessions._idle) <= MAX_IDLE


def test_stdin_calls_interleave_with_session_calls(sandbox: KubernetesSandbox) -> None:
    for i in range(3):
        assert sandbox.run_command("cat", stdin=f"in{i}").stdout == f"in{i}"
        assert sandbox.run_command(f"echo s{i}").stdout == f"s{i}\n"


def test_timeout_kills_and_keeps_the_session(sandbox: KubernetesSandbox) -> None:
    first = loop_pid(sandbox)
    with pytest.raises(CommandTimeout) as caught:
        sandbox.run_command("echo $$ > /tmp/victim; echo go; exec sleep 300", timeout=1)
    assert caught.value.result.stdout == "go\n"
    victim = sandbox.run_command("cat /tmp/victim", check=True).stdout.strip()
    alive = sandbox.run_command(f'grep -q "^State:.*[^Z] " /proc/{victim}/status')
    assert alive.exit_code != 0, f"{victim} survived"
    assert loop_pid(sandbox) == first


def test_interrupt_kills_and_replaces_the_session(sandbox: KubernetesSandbox) -> None:
    loop_pid(sandbox)

    def interrupt(_: bytes) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sandbox.stream("echo go; exec sleep 300", on_stdout=interrupt, on_stderr=None,
                       timeout=60)
    assert sandbox.run_command("echo fine").stdout == "fine\n"


def test_sandbox_without_what_the_loop_needs_falls_back_to_one_exec(
    make_sandbox: MakeSandbox,
) -> None:
    # No writable TMPDIR: the loop cannot make its FIFOs and exits UNSUPPORTED, as in an
    # image without mkfifo (tests/unit/test_exec_loop.py runs that case locally). An
    # empty PATH would be closer, but then the container's own `tail` cannot start.
    sandbox = make_sandbox(exec_session=True, env={"TMPDIR": "/sandboxkit-nothing/tmp"}).init()
    result = sandbox.run_command("echo fallback; echo e >&2; exit 4")
    assert (result.stdout, result.stderr, result.exit_code) == ("fallback\n", "e\n", 4)
    assert sandbox._sessions is not None and not sandbox._sessions.supported
    assert sandbox.run_command("echo again").stdout == "again\n"


def test_exec_session_off_uses_no_pool(make_sandbox: MakeSandbox) -> None:
    sandbox = make_sandbox(exec_session=False).init()
    assert sandbox._sessions is None
    first = sandbox.run_command("echo $PPID").stdout
    assert sandbox.run_command("echo $PPID").stdout != first


def test_teardown_closes_the_sessions(make_sandbox: MakeSandbox) -> None:
    sandbox = make_sandbox(exec_session=True).init()
    sandbox.run_command("true")
    pool = sandbox._sessions
    assert pool is not None and pool._idle
    sandbox.teardown()
    assert not pool._idle


def test_sessions_survive_a_busy_thread(sandbox: KubernetesSandbox) -> None:
    """A long command on one thread does not hold up short ones on another."""
    busy = threading.Thread(target=sandbox.run_command, args=("sleep 2",))
    busy.start()
    time.sleep(0.2)
    started = time.monotonic()
    assert sandbox.run_command("echo quick").stdout == "quick\n"
    assert time.monotonic() - started < 1.5
    busy.join()
