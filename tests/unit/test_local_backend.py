"""What only the local backend has: the warning, the private directory, and cleanup.

The shared behaviour is tested by the contract suite (tests/integration/
test_sandbox_contract.py, parametrized with local); these need no cluster and no Docker.
"""

from __future__ import annotations

import os
import select
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandboxkit import create_sandbox
from sandboxkit.backends import local
from sandboxkit.backends.local import LocalSandbox, LocalSandboxWarning


@pytest.fixture
def sandbox() -> Iterator[LocalSandbox]:
    made = create_sandbox(execution_backend="local")
    assert isinstance(made, LocalSandbox)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LocalSandboxWarning)  # tested on its own below
        made.init()
    yield made
    made.teardown()


def test_first_use_warns_once_with_a_filterable_category(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "_warned", False)
    first, second = LocalSandbox(), LocalSandbox()
    try:
        with pytest.warns(LocalSandboxWarning, match="NOT isolation"):
            first.init()
        with warnings.catch_warnings():
            warnings.simplefilter("error", LocalSandboxWarning)
            second.init()  # no second warning in the same process
    finally:
        first.teardown()
        second.teardown()


def test_commands_get_a_private_home_and_tmpdir_but_see_the_host(
    sandbox: LocalSandbox, tmp_path: Path,
) -> None:
    assert sandbox.path is not None
    assert sandbox.path.stat().st_mode & 0o777 == 0o700
    seen = sandbox.run_command('printf "%s|%s|%s" "$HOME" "$TMPDIR" "$(pwd)"').stdout
    assert seen == f"{sandbox.path}|{sandbox.path / 'tmp'}|{sandbox.path}"
    # Not isolation: the host's files are right there.
    (tmp_path / "host-file").write_text("visible\n")
    assert sandbox.run_command(f"cat '{tmp_path}/host-file'").stdout == "visible\n"


def test_teardown_kills_background_processes_and_removes_the_directory(
    sandbox: LocalSandbox,
) -> None:
    path = sandbox.path
    assert path is not None
    pid = int(sandbox.run_command("sleep 300 >/dev/null 2>&1 & echo $!").stdout)
    watch = os.pidfd_open(pid)
    try:
        sandbox.teardown()
        readable, _, _ = select.select([watch], [], [], 10)  # the pidfd reports the exit
        assert readable, f"background process {pid} survived teardown"
    finally:
        os.close(watch)
    assert not path.exists()
    assert sandbox.status().gone


@pytest.mark.parametrize(("cmd", "timeout", "field"), [
    ("echo \x00", None, "cmd"), ("echo \ud800", None, "cmd"), (b"echo", None, "cmd"),
    (None, None, "cmd"), ("true", float("nan"), "timeout"), ("true", float("inf"), "timeout"),
    ("true", -1, "timeout"), ("true", True, "timeout"), ("true", "5", "timeout"),
])
def test_bad_commands_and_timeouts_are_config_errors_before_anything_runs(
    sandbox: LocalSandbox, cmd: object, timeout: object, field: str,
) -> None:
    """Every backend's commands pass one check (Sandbox._timed_execute): the local one,
    which would otherwise fail with ValueError on a NUL, stands for all."""
    from sandboxkit.errors import ConfigError

    for run in (sandbox.run_command, lambda c, **kw: sandbox.stream(
            c, on_stdout=None, on_stderr=None, **kw)):
        with pytest.raises(ConfigError, match=field):
            run(cmd, timeout=timeout)  # type: ignore[arg-type]
    assert sandbox.run_command("echo still fine").stdout == "still fine\n"
