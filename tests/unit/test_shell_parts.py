"""The pure parts of ``sandboxkit shell`` and ``%sandbox_shell``: how the command line is
split, the resize channel's message, the printed command lines, the local terminal's size
and raw mode (on a pty, restored afterwards)."""

from __future__ import annotations

import json
import os
import pty
import shlex
import termios
from unittest import mock

import pytest

from sandboxkit.backends.kubernetes.frames import RESIZE
from sandboxkit.backends.kubernetes.terminal import resize_message
from sandboxkit.backends.kubernetes.transport import _exec_url
from sandboxkit.backends.terminal import (
    raw_terminal,
    set_window_size,
    shell_commands,
    window_size,
)
from sandboxkit.cli import _parse, main, split_command


def test_the_command_is_everything_after_the_first_separator() -> None:
    assert split_command(["shell", "s", "-n", "ns", "--", "ls", "--", "-l"]) == (
        ["shell", "s", "-n", "ns"], ["ls", "--", "-l"])
    assert split_command(["shell", "s"]) == (["shell", "s"], None)


@pytest.mark.parametrize(("argv", "expected"), [
    (["shell", "box"], ("box", None, None, [])),
    (["shell", "box", "-n", "ns", "--backend", "local"], ("box", "ns", "local", [])),
    (["shell", "-n", "ns", "box", "--", "python", "-i"], ("box", "ns", None, ["python", "-i"])),
    (["shell", "box", "--", "sh", "-c", "echo -n --"], ("box", None, None,
                                                       ["sh", "-c", "echo -n --"])),
])
def test_shell_arguments(argv: list[str], expected: tuple[object, ...]) -> None:
    args = _parse(argv)
    assert (args.name, args.namespace, args.backend, args.remote_command) == expected


def test_other_commands_parse_as_before_with_a_separator(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert _parse(["diagnose", "--", "box"]).name == "box"


@pytest.mark.parametrize("argv", [["shell"], ["shell", "box", "--backend", "podman"]])
def test_bad_shell_arguments_are_usage_errors(argv: list[str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("sandboxkit shell: error: ")


def test_resize_message_is_client_gos_terminal_size() -> None:
    assert RESIZE == 4
    assert json.loads(resize_message(120, 40)) == {"Width": 120, "Height": 40}
    assert resize_message(80, 24) == b'{"Width":80,"Height":24}'


def test_a_terminal_exec_asks_for_tty_and_no_separate_stderr() -> None:
    url = _exec_url("https://h:6443", "ns", "pod", "sandbox", ["/bin/sh"], True, tty=True)
    assert "tty=true" in url and "stderr=false" in url and "stdin=true" in url
    plain = _exec_url("https://h:6443", "ns", "pod", "sandbox", ["/bin/sh"], False)
    assert "tty=false" in plain and "stderr=true" in plain


def test_printed_commands_are_shell_quoted() -> None:
    lines = shell_commands("box", namespace="my ns", pod="box-abc",
                           kubeconfig="/home/u/my kube", context="kind-x")
    assert lines == [
        "KUBECONFIG='/home/u/my kube' sandboxkit shell box -n 'my ns' --context kind-x",
        "KUBECONFIG='/home/u/my kube' kubectl --context kind-x exec -it -n 'my ns' box-abc "
        "-c sandbox -- /bin/sh",
    ]
    argv = shlex.split(lines[0])[1:]
    assert _parse(argv[1:]).namespace == "my ns"


def test_printed_commands_without_cluster_settings_or_pod() -> None:
    assert shell_commands("box", namespace="ns") == ["sandboxkit shell box -n ns"]
    assert shell_commands("box", backend="local") == ["sandboxkit shell box --backend local"]


def test_window_size_and_raw_mode_on_a_pty() -> None:
    master, slave = pty.openpty()
    try:
        assert window_size(slave) is None  # a fresh pty has no size
        set_window_size(master, 132, 43)
        assert window_size(slave) == (132, 43)
        before = termios.tcgetattr(slave)
        with pytest.raises(RuntimeError), raw_terminal(slave):
            assert not termios.tcgetattr(slave)[3] & termios.ICANON
            raise RuntimeError("restored even on errors")
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def test_not_a_terminal_is_left_alone() -> None:
    read, write = os.pipe()
    try:
        assert window_size(read) is None
        with mock.patch("termios.tcsetattr") as tcsetattr, raw_terminal(read):
            pass
        tcsetattr.assert_not_called()
    finally:
        os.close(read)
        os.close(write)


def test_sandbox_shell_magic_prints_both_commands(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from sandboxkit.config import SandboxConfig
    from sandboxkit.magics import SandboxMagics

    monkeypatch.delenv("KUBECONFIG", raising=False)
    magics = SandboxMagics()
    config = SandboxConfig.resolve(kubeconfig="/k/config", context="dev")
    sandbox = SimpleNamespace(name="box", namespace="ns", pod_name="box-x1", config=config)
    magics.registry.add(sandbox)  # type: ignore[arg-type]
    magics.sandbox_shell("")
    out = capsys.readouterr().out
    assert "  KUBECONFIG=/k/config sandboxkit shell box -n ns --context dev\n" in out
    assert ("  KUBECONFIG=/k/config kubectl --context dev exec -it -n ns box-x1 -c sandbox "
            "-- /bin/sh\n") in out


def test_a_backend_without_a_terminal_says_so() -> None:
    from types import SimpleNamespace

    from sandboxkit.backends.base import Sandbox
    from sandboxkit.config import SandboxConfig
    from sandboxkit.errors import ConfigError

    fake = SimpleNamespace(config=SandboxConfig.resolve(execution_backend="local"))
    with pytest.raises(ConfigError, match="no interactive shell yet"):
        Sandbox.open_terminal(fake, ["sh"])  # type: ignore[arg-type]
