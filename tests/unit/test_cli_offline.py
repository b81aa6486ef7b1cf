"""The ``sandboxkit`` command without a cluster: help, flags, and failures that end in one
``error:`` line and an exit status instead of a traceback -- for any argv at all (a
property, run in-process with every HTTP request refused)."""

from __future__ import annotations

import contextlib
import io
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import assume, given
from hypothesis import strategies as st
from property_support import ANY_TEXT, FAST

from sandboxkit.cli import main

CLUSTER_COMMANDS = [["ls"], ["gc"], ["rbac", "apply"], ["rbac", "verify"],
                    ["rbac", "uninstall"], ["doctor"], ["diagnose", "some-sandbox"],
                    ["pool", "start", "warm", "--size", "1"], ["pool", "ls"],
                    ["pool", "drain", "warm"]]


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A local port nothing listens on (bound but never listening, so it stays that way)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def kubeconfig_for(path: Path, server: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "here",
        "clusters": [{"name": "here", "cluster": {"server": server}}],
        "users": [{"name": "me", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": "here", "context": {"cluster": "here", "user": "me"}}],
    }))
    return path


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize("command", [[], ["ls"], ["gc"], ["rbac"], ["rbac", "apply"],
                                     ["rbac", "verify"], ["rbac", "uninstall"], ["doctor"],
                                     ["diagnose"], ["devcluster"], ["devcluster", "start"],
                                     ["pool"], ["pool", "start"], ["pool", "ls"],
                                     ["pool", "drain"]],
                         ids=lambda c: " ".join(c) or "top")
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    assert f"usage: sandboxkit {' '.join(command)}".rstrip() in capsys.readouterr().out


@pytest.mark.parametrize("command", CLUSTER_COMMANDS, ids=" ".join)
def test_cluster_commands_take_kubectls_connection_flags(
        command: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "missing-kubeconfig"
    assert main([*command, "--kubeconfig", str(missing)]) == 2
    assert str(missing) in one_error_line(capsys)


def test_connection_flags_may_come_before_the_command(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "missing-kubeconfig"
    assert main(["--kubeconfig", str(missing), "ls"]) == 2
    assert str(missing) in one_error_line(capsys)


def test_no_cluster_configured_says_how_to_get_one(
        no_cluster: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls"]) == 2
    line = one_error_line(capsys)
    assert "no cluster is configured" in line and "sandboxkit devcluster start" in line


def test_an_unknown_context_is_a_setting_to_fix(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, closed_port: int) -> None:
    config = kubeconfig_for(tmp_path / "config", f"http://127.0.0.1:{closed_port}")
    assert main(["gc", "--kubeconfig", str(config), "--context", "nope"]) == 2
    assert "context" in one_error_line(capsys)


def test_an_unreachable_cluster_is_one_line_saying_what_to_check(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, closed_port: int) -> None:
    config = kubeconfig_for(tmp_path / "config", f"http://127.0.0.1:{closed_port}")
    assert main(["ls", "--kubeconfig", str(config), "-n", "default"]) == 1
    line = one_error_line(capsys)
    assert "cannot reach the cluster" in line and "kubectl cluster-info" in line


def test_namespace_and_all_namespaces_exclude_each_other(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["ls", "-n", "x", "-A"])
    assert done.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "expected"), [
    (["pool", "start", "Warm", "--size", "1"], "pool='Warm' is invalid"),
    (["pool", "start", "warm", "--size", "1", "--cpu-limit", "2Gb"], "cpu_limit='2Gb'"),
    (["pool", "start", "warm", "--size", "1", "--env", "oops"], "--env='oops'"),
    (["pool", "drain", "Warm"], "pool='Warm' is invalid"),
], ids=["name", "quantity", "env", "drain-name"])
def test_bad_pool_settings_are_one_error_line_before_any_request(
        argv: list[str], expected: str, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        closed_port: int) -> None:
    config = kubeconfig_for(tmp_path / "config", f"http://127.0.0.1:{closed_port}")
    assert main([*argv, "--kubeconfig", str(config)]) == 2
    assert expected in one_error_line(capsys)


@pytest.mark.parametrize("size", ["0", "-1", "two"])
def test_pool_size_must_be_a_positive_count(size: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["pool", "start", "warm", "--size", size])
    assert done.value.code == 2
    assert "argument --size" in capsys.readouterr().err.splitlines()[-1]


def test_the_cli_never_imports_ipython_or_ipywidgets(tmp_path: Path) -> None:
    code = ("import sys; from sandboxkit.cli import main;"
            f"main(['ls', '--kubeconfig', {str(tmp_path / 'missing')!r}]);"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('IPython', 'ipywidgets')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_an_argument_with_a_newline_keeps_the_error_on_one_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["ls", "a\nb"])
    assert done.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "sandboxkit: error: unrecognized arguments: a b")


# Commands that start servers (demo, lab, devcluster) are left out: valid input runs them.
_LOCAL_COMMANDS = {"demo", "lab", "devcluster"}
_WORDS = st.sampled_from([
    "-n", "--namespace", "ci", "-A", "--all-namespaces", "-o", "--output", "wide", "json",
    "yaml", "--kubeconfig", "--context", "--dry-run", "--service-account", "--file",
    "--image", "busybox", "--", "-", "-x", "--nope", "0", "-1", "1e400", "nan",
    "\udcff", "\x00", "a\nb", "", *[" ".join(command) for command in CLUSTER_COMMANDS],
])
_ARGV = st.lists(st.one_of(_WORDS, ANY_TEXT), max_size=6)
_ERROR_LINE = re.compile(r"(sandboxkit[\w -]*: )?error: .*")


def run_cli(argv: list[str]) -> tuple[int | str | None, str, str]:
    """``main(argv)`` in this process: its exit status (returned or from SystemExit), stdout
    and stderr. StringIO, not capsys: a real stderr writes a lone surrogate escaped, while
    capsys's stream would raise on it."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status: int | str | None = main(argv)
        except SystemExit as done:
            status = done.code
    return status, out.getvalue(), err.getvalue()


@FAST
@given(command=st.sampled_from([[], *CLUSTER_COMMANDS]), words=_ARGV)
def test_any_argv_is_help_or_exit_2_with_one_error_line(
        offline: Path, command: list[str], words: list[str]) -> None:
    argv = [*command, *words]
    assume(not _LOCAL_COMMANDS & set(argv))
    status, out, err = run_cli(argv)
    if status == 0:  # -h, or an abbreviation of --help
        assert out.startswith("usage: sandboxkit") and err == ""
        return
    assert status == 2 and out == "", (status, out, err)
    lines = err.splitlines()
    assert "Traceback" not in err
    assert [line for line in lines if "error:" in line] == lines[-1:], err
    assert _ERROR_LINE.fullmatch(lines[-1]), err
