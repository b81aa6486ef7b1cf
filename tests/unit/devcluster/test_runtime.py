"""The container runtime, for real: namespaced processes, CRI logs, exec, stop."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from sandboxkit.devcluster.runtime import ContainerRuntime, ContainerStartError, rfc3339nano

CRI_LINE = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z (stdout|stderr) [FP] ")


def run(test: Callable[[ContainerRuntime], Awaitable[None]], root: Path) -> None:
    async def main() -> None:
        runtime = ContainerRuntime(root)
        try:
            await test(runtime)
        finally:
            await runtime.shutdown()

    asyncio.run(main())


def namespaced(runtime: ContainerRuntime) -> None:
    if runtime.isolation == "none":
        pytest.skip(f"no namespaces here: {runtime.describe()}")


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def test_rfc3339nano_trims_trailing_zeros() -> None:
    assert rfc3339nano(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.12Z"
    assert rfc3339nano(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"


def test_rejects_unknown_isolation(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ContainerRuntime(tmp_path, isolation="docker")
    plain = ContainerRuntime(tmp_path, isolation="none")
    assert plain.isolation == "none"
    assert "plain host processes" in plain.describe()


def test_start_logs_exec_and_stop(tmp_path: Path) -> None:
    async def body(runtime: ContainerRuntime) -> None:
        namespaced(runtime)
        c = await runtime.start_container(
            "pod-a", "main", ["sh", "-c", "echo hi; echo oops >&2; echo data > /tmp/sbk-private; "
                              "printf tail; sleep 30"], {"GREETING": "hello"}, None,
            hostname="pod-a")
        assert c.pid > 0 and c.running
        await until(lambda: b"oops" in c.log_path.read_bytes())

        started = time.monotonic()
        proc = await runtime.exec("pod-a", "main", ["cat", "/tmp/sbk-private"])
        out, err = await proc.communicate()
        assert (out, err, proc.returncode) == (b"data\n", b"", 0)
        assert time.monotonic() - started < 0.5  # no shell layers: tens of ms

        proc = await runtime.exec("pod-a", "main", ["sh", "-c", 'echo "$GREETING $PWD"; hostname'])
        assert os.getpgid(proc.pid) == proc.pid  # own process group, killable as a tree
        out, _ = await proc.communicate()
        assert out == b"hello /workspace\npod-a\n"

        assert not Path("/tmp/sbk-private").exists()  # the pod's /tmp is not the host's
        # PID 1 (sh) ignores SIGTERM like any container init: SIGKILL after the grace
        begin = time.monotonic()
        assert await c.stop(0.3) == 128 + signal.SIGKILL
        assert 0.25 < time.monotonic() - begin < 3
        assert not c.running
        # an unterminated last line is flushed as a partial record when the stream ends
        lines = c.log_path.read_bytes().splitlines()
        assert all(CRI_LINE.match(line) for line in lines)
        assert sorted(line.split(b" ", 1)[1] for line in lines) == [
            b"stderr F oops", b"stdout F hi", b"stdout P tail"]

    run(body, tmp_path)


def test_graceful_stop_and_exit_codes(tmp_path: Path) -> None:
    async def body(runtime: ContainerRuntime) -> None:
        c = await runtime.start_container(
            "pod-b", "main", ["sh", "-c", "trap 'exit 7' TERM; while :; do sleep 0.05; done"],
            {}, None)
        await asyncio.sleep(0.2)
        begin = time.monotonic()
        assert await c.stop(10) == 7
        assert time.monotonic() - begin < 5
        done = await runtime.start_container("pod-b", "main", ["sh", "-c", "exit 3"], {}, None)
        assert await done.wait() == 3
        assert done.log_path != c.log_path and c.log_path.exists()  # previous log kept

    run(body, tmp_path)


def test_pods_have_private_tmp_and_pid_namespace(tmp_path: Path) -> None:
    async def body(runtime: ContainerRuntime) -> None:
        namespaced(runtime)
        for pod, text in (("p1", "one"), ("p2", "two")):
            await runtime.start_container(
                pod, "main", ["sh", "-c", f"echo {text} > /tmp/x; exec sleep 30"], {}, None)
        await asyncio.sleep(0.3)
        outputs = []
        for pod in ("p1", "p2"):
            proc = await runtime.exec(pod, "main", ["cat", "/tmp/x"])
            outputs.append((await proc.communicate())[0])
        assert outputs == [b"one\n", b"two\n"]

        count = "echo $$; ls /proc | grep -c '^[0-9]'"
        proc = await runtime.exec("p1", "main", ["sh", "-c", count])
        out, _ = await proc.communicate()
        assert int(out.split()[1]) < 10  # only the pod's own processes are visible

        proc = await runtime.exec("p1", "main", ["sh", "-c", "touch /etc/nope"])
        _, err = await proc.communicate()
        assert proc.returncode != 0 and b"Read-only file system" in err

        # kill -9 -1 reaches every process of the pod but nothing outside it
        proc = await runtime.exec("p1", "main", ["sh", "-c", "kill -9 -1; sleep 1"])
        await proc.communicate()
        other = runtime.container("p2", "main")
        assert other is not None and other.running
        proc = await runtime.exec("p2", "main", ["cat", "/tmp/x"])
        assert (await proc.communicate())[0] == b"two\n"

    run(body, tmp_path)


def test_command_not_found_and_missing_container(tmp_path: Path) -> None:
    async def body(runtime: ContainerRuntime) -> None:
        with pytest.raises(ContainerStartError) as exc:
            await runtime.start_container("pod-c", "main", ["no-such-binary"], {}, None)
        assert str(exc.value) == 'exec: "no-such-binary": executable file not found in $PATH'
        with pytest.raises(ContainerStartError, match="no such file or directory"):
            await runtime.start_container("pod-c", "main", ["/nope/bin"], {}, None)
        with pytest.raises(LookupError):
            await runtime.exec("pod-c", "main", ["true"])
        c = await runtime.start_container("pod-c", "main", ["sleep", "30"], {}, None)
        with pytest.raises(ContainerStartError, match="executable file not found"):
            await runtime.exec("pod-c", "main", ["no-such-binary"])
        runtime.cleanup("pod-c")
        assert await c.wait() == 128 + signal.SIGKILL
        assert not (tmp_path / "pod-c").exists()

    run(body, tmp_path)


def test_exec_with_tty(tmp_path: Path) -> None:
    async def body(runtime: ContainerRuntime) -> None:
        await runtime.start_container("pod-t", "main", ["sleep", "30"], {}, None)
        proc = await runtime.exec("pod-t", "main", ["sh", "-c", "test -t 0 && echo tty"], tty=True)
        assert proc.stdout is not None and proc.stderr is None
        out = await asyncio.wait_for(proc.stdout.read(), 5)
        assert (out.strip(), await proc.wait()) == (b"tty", 0)

    run(body, tmp_path)


def test_exec_terminal_takes_the_resize_frames_size(tmp_path: Path) -> None:
    async def body(runtime: ContainerRuntime) -> None:
        await runtime.start_container("pod-r", "main", ["sleep", "30"], {}, None)
        proc = await runtime.exec("pod-r", "main", ["sh", "-c", "read x; stty size"], tty=True)
        proc.resize(120, 40)  # what a resize frame {"Width": 120, "Height": 40} does
        proc.stdin.write(b"\n")
        out = await asyncio.wait_for(proc.stdout.read(), 5)
        assert out.split()[-2:] == [b"40", b"120"] and await proc.wait() == 0

    run(body, tmp_path)
