"""``sandboxkit shell`` driven through a pseudo-terminal, as a user's terminal drives it:
typed input runs remotely, the window size follows the local terminal (TIOCSWINSZ, then
SIGWINCH), Ctrl-C reaches the remote shell as a byte, and the remote exit code is the
CLI's."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_support import MakeSandbox

from sandboxkit import KubernetesSandbox
from sandboxkit.backends.local import LocalSandbox, LocalSandboxWarning
from sandboxkit.cli import main


def set_size(fd: int, rows: int, columns: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


class Terminal:
    """The CLI in a child process whose stdin, stdout and stderr are a pty's slave."""

    def __init__(self, argv: list[str], rows: int = 24, columns: int = 80,
                 program: list[str] | None = None) -> None:
        self.master, slave = pty.openpty()
        set_size(slave, rows, columns)
        program = program or [sys.executable, "-m", "sandboxkit.cli"]
        self.process = subprocess.Popen(
            [*program, *argv], stdin=slave, stdout=slave,
            stderr=slave, start_new_session=True, close_fds=True)
        os.close(slave)
        self.output = b""

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def expect(self, text: str, timeout: float = 20.0) -> None:
        """Read until ``text`` appears after what earlier expectations consumed."""
        deadline = time.monotonic() + timeout
        wanted = text.encode()
        while wanted not in self.output:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} not seen in {self.output!r}")
            if select.select([self.master], [], [], left)[0]:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"{text!r} not seen before EOF in {self.output!r}")
                self.output += chunk
        self.output = self.output[self.output.index(wanted) + len(wanted):]

    def resize(self, rows: int, columns: int) -> None:
        set_size(self.master, rows, columns)
        self.process.send_signal(signal.SIGWINCH)

    def wait(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            if select.select([self.master], [], [], 0.1)[0]:
                with contextlib.suppress(OSError):  # EIO once the child is gone
                    self.output += os.read(self.master, 65536)
        return self.process.wait(timeout=1)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


@pytest.fixture
def sandbox(make_sandbox: MakeSandbox) -> KubernetesSandbox:
    return make_sandbox().init()


@pytest.fixture
def shell(kubeconfig: Path, namespace: str, sandbox: KubernetesSandbox
          ) -> Iterator[Terminal]:
    terminal = Terminal(["shell", sandbox.name, "-n", namespace, "--kubeconfig",
                         str(kubeconfig), "--", "/bin/sh"], rows=30, columns=100)
    yield terminal
    terminal.close()


def test_typed_input_runs_and_exit_code_is_the_clis(kubeconfig: Path, namespace: str,
                                                     sandbox: KubernetesSandbox) -> None:
    terminal = Terminal(["shell", sandbox.name, "-n", namespace, "--kubeconfig",
                         str(kubeconfig)])
    try:
        terminal.type("echo ans$((6 * 7))wer\r")
        terminal.expect("ans42wer")  # the expansion ran remotely, not the echo of it
        terminal.type("exit 7\r")
        assert terminal.wait() == 7
    finally:
        terminal.close()


def test_window_size_at_start_and_on_sigwinch(shell: Terminal) -> None:
    shell.type("stty size\r")
    shell.expect("30 100")
    shell.resize(40, 120)
    time.sleep(0.3)  # the resize frame travels independently of the keystrokes
    shell.type("stty size\r")
    shell.expect("40 120")
    shell.type("exit\r")
    assert shell.wait() == 0


def test_ctrl_c_interrupts_the_remote_command(shell: Terminal) -> None:
    shell.type("sleep 30; echo not-interrupted\r")
    time.sleep(0.5)
    started = time.monotonic()
    shell.type("\x03")
    shell.type("echo after$((1 + 1))\r")
    shell.expect("after2")
    assert time.monotonic() - started < 10
    assert b"not-interrupted" not in shell.output
    shell.type("\x04")  # Ctrl-D: the remote shell reads EOF and exits
    assert shell.wait() == 0


def test_unknown_sandbox_is_one_error_line(capsys: pytest.CaptureFixture[str],
                                           kubeconfig: Path, namespace: str) -> None:
    status = main(["shell", "no-such-sandbox", "-n", namespace, "--kubeconfig",
                   str(kubeconfig)])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "no-such-sandbox" in err


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_exec_it_sees_the_same_terminal(kubeconfig: Path, namespace: str,
                                                sandbox: KubernetesSandbox) -> None:
    """The devcluster's terminal execs as kubectl uses them: size at start (resize channel),
    exit code, in the command %sandbox_shell prints."""
    terminal = Terminal(["--kubeconfig", str(kubeconfig), "exec", "-it", "-n", namespace,
                         str(sandbox.pod_name), "-c", "sandbox", "--", "/bin/sh"],
                        rows=30, columns=100, program=["kubectl"])
    try:
        terminal.type("stty size\r")
        terminal.expect("30 100")
        terminal.type("exit 3\r")
        assert terminal.wait() == 3
    finally:
        terminal.close()


# --- other backends -------------------------------------------------------------------------


@pytest.fixture
def local_sandbox() -> Iterator[LocalSandbox]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LocalSandboxWarning)
        sandbox = LocalSandbox().init()
    yield sandbox
    sandbox.teardown()


def test_local_backend_shell(local_sandbox: LocalSandbox) -> None:
    terminal = Terminal(["shell", local_sandbox.name, "--backend", "local", "--", "/bin/sh"],
                        rows=30, columns=100)
    try:
        terminal.type("stty size; pwd\r")
        terminal.expect("30 100")
        terminal.expect(local_sandbox.name)  # it runs in the sandbox's directory
        terminal.resize(40, 120)
        time.sleep(0.2)
        terminal.type("sleep 30; echo not-interrupted\r")
        time.sleep(0.3)
        terminal.type("\x03stty size\r")
        terminal.expect("40 120")
        terminal.type("exit 7\r")
        assert terminal.wait() == 7
        assert b"not-interrupted" not in terminal.output
    finally:
        terminal.close()


@pytest.mark.docker
def test_docker_backend_shell(docker_host: str) -> None:
    from docker_support import IMAGE

    from sandboxkit import create_sandbox

    with create_sandbox(execution_backend="docker", image=IMAGE) as sandbox:
        terminal = Terminal(["shell", sandbox.name, "--backend", "docker", "--", "sh"],
                            rows=30, columns=100)
        try:
            terminal.type("stty size\r")
            terminal.expect("30 100")
            terminal.resize(40, 120)
            time.sleep(0.3)
            terminal.type("stty size\r")
            terminal.expect("40 120")
            terminal.type("exit 7\r")
            assert terminal.wait() == 7
        finally:
            terminal.close()
