"""Sandbox.sync and Sandbox.diff on every backend of the contract suite (its fixtures).

What matters is what the sandbox ends up holding and what was sent: an unchanged resync
sends nothing, one change sends one file, a fresh attach (new object, no local state) still
sees the remote manifest, and modes, symlinks and binary content arrive exact.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import test_sandbox_contract as contract

from sandboxkit import attach_sandbox
from sandboxkit.backends.base import Sandbox

# The contract suite's fixtures, so these tests run on each of its backends.
backend_mode, backend, make_sandbox = contract.backend_mode, contract.backend, contract.make_sandbox
sandbox, scratch, sandbox_namespace = contract.sandbox, contract.scratch, contract.sandbox_namespace

BINARY = bytes(range(256)) * 4


def _tree(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "calc.py").write_text("def mean(v):\n    return sum(v) / len(v)\n")
    (root / "run.sh").write_text("#!/bin/sh\necho run\n")
    os.chmod(root / "run.sh", 0o750)
    (root / "blob.bin").write_bytes(BINARY)
    os.symlink("pkg/calc.py", root / "link")
    (root / "pkg" / "calc.pyc").write_bytes(b"\0junk")
    return root


def test_sync_sends_only_what_changed(sandbox: Sandbox, scratch: str, tmp_path: Path) -> None:
    local = _tree(tmp_path / "src")
    remote = f"{scratch}/proj"
    first = sandbox.sync(local, remote, exclude=["*.pyc"])
    assert (first.added, first.changed, first.unchanged) == (4, 0, 0)
    again = sandbox.sync(local, remote, exclude=["*.pyc"])
    assert (again.added, again.changed, again.deleted, again.bytes_sent) == (0, 0, 0, 0)
    assert again.unchanged == 4
    (local / "pkg" / "calc.py").write_text("def mean(v):\n    return 0\n")
    one = sandbox.sync(local, remote, exclude=["*.pyc"])
    assert one.sent == ("pkg/calc.py",) and one.changed == 1
    assert "return 0" in sandbox.run_command(f"cat {remote}/pkg/calc.py").stdout


def test_modes_links_binary_kept_and_excludes_honoured(sandbox: Sandbox, scratch: str,
                                                       tmp_path: Path) -> None:
    local = _tree(tmp_path / "src")
    remote = f"{scratch}/proj"
    sandbox.sync(local, remote, exclude=["*.pyc"])
    out = sandbox.run_command(
        f'cd {remote} && stat -c %a run.sh && readlink link && sha256sum blob.bin && '
        '{ [ -e pkg/calc.pyc ] && echo pyc || echo nopyc; }', check=True).stdout.split()
    import hashlib
    assert out[:2] == ["750", "pkg/calc.py"]
    assert out[2] == hashlib.sha256(BINARY).hexdigest()
    assert out[-1] == "nopyc"
    os.chmod(local / "run.sh", 0o755)  # a mode change alone is a change
    assert sandbox.sync(local, remote, exclude=["*.pyc"]).sent == ("run.sh",)


def test_delete_removes_remote_files_gone_locally(sandbox: Sandbox, scratch: str,
                                                  tmp_path: Path) -> None:
    local = _tree(tmp_path / "src")
    remote = f"{scratch}/proj"
    sandbox.sync(local, remote)
    (local / "blob.bin").unlink()
    kept = sandbox.sync(local, remote)
    assert kept.deleted == 0
    assert sandbox.run_command(f"test -e {remote}/blob.bin").exit_code == 0
    gone = sandbox.sync(local, remote, delete=True, exclude=["*.pyc"])
    assert gone.deleted == 1
    assert sandbox.run_command(f"test -e {remote}/blob.bin").exit_code != 0
    assert sandbox.run_command(f"test -e {remote}/pkg/calc.pyc").exit_code == 0  # excluded


def test_a_fresh_attach_reads_the_remote_manifest(sandbox: Sandbox, scratch: str,
                                                  tmp_path: Path, backend: str) -> None:
    local = _tree(tmp_path / "src")
    remote = f"{scratch}/proj"
    sandbox.sync(local, remote)
    other = attach_sandbox(sandbox.name, config=sandbox.config)
    assert other is not sandbox
    report = other.sync(local, remote)
    assert report.bytes_sent == 0 and report.unchanged == 5


def test_diff_against_the_last_sync_outside_git(sandbox: Sandbox, scratch: str,
                                                tmp_path: Path) -> None:
    local = _tree(tmp_path / "src")
    remote = f"{scratch}/proj"
    sandbox.sync(local, remote)
    assert sandbox.diff(remote).summary.files == 0
    # run.sh: not the target of `link` (busybox diff follows links, GNU diff does not)
    sandbox.run_command(f"cd {remote} && echo '# more' >> run.sh && echo n > new.txt",
                        check=True)
    found = sandbox.diff(remote)
    assert (found.summary.files, found.summary.added, found.summary.removed) == (2, 2, 0)
    assert "+# more" in found.text and "b/new.txt" in found.text


def test_git_diff_in_a_checkout(sandbox: Sandbox, scratch: str, tmp_path: Path) -> None:
    if sandbox.run_command("command -v git").exit_code != 0:
        pytest.skip("git is not in this sandbox's image")
    local = _tree(tmp_path / "src")
    remote = f"{scratch}/repo"
    sandbox.sync(local, remote)
    git = "git -c user.name=t -c user.email=t@example.com"
    sandbox.run_command(f"cd {remote} && git init -q && {git} add . && {git} commit -qm i && "
                        "echo '# edit' >> pkg/calc.py && echo x > untracked.txt && "
                        "echo s > staged.txt && git add staged.txt", check=True)
    found = sandbox.diff(remote)
    assert found.untracked == ("untracked.txt",)
    assert "+# edit" in found.text and "+s" in found.text  # unstaged and staged
    assert (found.summary.files, found.summary.added) == (3, 2)


def test_awkward_names_are_data_not_shell(sandbox: Sandbox, scratch: str,
                                          tmp_path: Path) -> None:
    local = tmp_path / "src"
    (local / "-dir $(x)").mkdir(parents=True)
    names = ["-n 'q' $(touch pwned).txt", "-dir $(x)/ünï code.txt", "back\\slash"]
    for name in names:
        (local / name).write_text(name)
    remote = f"{scratch}/odd dir"
    assert sandbox.sync(local, remote).added == 3
    assert sandbox.sync(local, remote).unchanged == 3
    (local / names[1]).unlink()
    assert sandbox.sync(local, remote, delete=True).deleted == 1
    listing = sandbox.run_command(f"cd '{remote}' && find . -type f | sort", check=True)
    assert listing.stdout.splitlines() == ["./-n 'q' $(touch pwned).txt", "./back\\slash"]
    assert sandbox.run_command(f"ls '{remote}'/pwned").exit_code != 0
