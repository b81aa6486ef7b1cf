"""Pod confinement pieces on their own: the seccomp filter, nsexec, secret masking, the
isolation choice. The end-to-end attack is tests/integration/test_escape.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandboxkit.devcluster import runtime as runtime_module
from sandboxkit.devcluster.runtime import ContainerRuntime, _Layout, _secrets_under
from sandboxkit.devcluster.seccomp import write_filter

NSEXEC = Path(runtime_module.__file__).with_name("nsexec.py")

# Each line: a system call through libc, and the errno name the filter must give it.
PROBE = r"""
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def call(name, *args):
    rc = getattr(libc, name)(*args)
    return "ok" if rc >= 0 else errno.errorcode[ctypes.get_errno()]
print("unshare-user", call("unshare", 0x10000000))
print("mount", call("mount", b"none", b"/nonexistent", b"tmpfs", 0, None))
print("name_to_handle_at", call("name_to_handle_at", -100, b"/", None, None, 0))
print("ptrace", call("ptrace", 16, 1, None, None))
print("clone3", call("syscall", 435, None, 0))  # 435 on every architecture
print("getpid", call("getpid"))
print("open", call("open", b"/dev/null", 0))
print("nnp", open("/proc/self/status").read().split("NoNewPrivs:")[1].split()[0])
"""


@pytest.fixture(scope="module")
def bpf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_filter(tmp_path_factory.mktemp("seccomp") / "filter.bpf")


def test_filter_is_a_bpf_program(bpf: Path) -> None:
    size = bpf.stat().st_size
    assert size > 8 and size % 8 == 0  # struct sock_filter is 8 bytes


def test_nsexec_refuses_what_the_filter_names_and_allows_the_rest(bpf: Path) -> None:
    probe = subprocess.run([sys.executable, "-I", "-S", str(NSEXEC), str(bpf),
                            sys.executable, "-c", PROBE], capture_output=True, text=True,
                           timeout=30)
    assert probe.returncode == 0, probe.stderr
    seen = dict(line.split() for line in probe.stdout.splitlines())
    assert seen == {"unshare-user": "EPERM", "mount": "EPERM", "name_to_handle_at": "EPERM",
                    "ptrace": "EPERM", "clone3": "ENOSYS",
                    "getpid": "ok", "open": "ok", "nnp": "1"}


def test_without_the_filter_the_probe_sees_the_difference() -> None:
    """The probe can tell: unfiltered, the same calls fail for other reasons or not at all."""
    probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                           timeout=30)
    seen = dict(line.split() for line in probe.stdout.splitlines())
    assert seen["nnp"] == "0"
    assert seen["clone3"] != "ENOSYS"
    assert seen["name_to_handle_at"] != "EPERM"
    assert seen["mount"] != "EPERM" or os.geteuid() != 0


def test_nsexec_fails_loudly_on_a_bad_filter(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bpf"
    bad.write_bytes(b"abc")
    run = subprocess.run([sys.executable, "-I", "-S", str(NSEXEC), str(bad), "true"],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode != 0
    assert run.stderr.startswith("nsexec:") and "not a BPF program" in run.stderr


def test_secrets_are_the_entries_others_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "public").write_text("x")
    (tmp_path / "shadow").write_text("x")
    (tmp_path / "shadow").chmod(0o640)
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "key").write_text("x")
    (tmp_path / "private").chmod(0o700)
    (tmp_path / "open").mkdir()
    (tmp_path / "open" / "host_key").write_text("x")
    (tmp_path / "open" / "host_key").chmod(0o600)
    os.symlink("/nonexistent", tmp_path / "link")
    assert _secrets_under(str(tmp_path)) == {
        str(tmp_path / "shadow"), str(tmp_path / "private"), str(tmp_path / "open" / "host_key")}


def test_a_pod_sees_only_the_host_view_its_mounts_and_nothing_masked(tmp_path: Path) -> None:
    layout = _Layout(tmp_path, tmp_path / "tmp", tmp_path / "vt", tmp_path / "home", None,
                     "/workspace", masked=frozenset({"/etc/shadow", "/etc/ssl/private"}))
    assert layout.host_path("/usr/bin/env") == Path("/usr/bin/env")
    assert layout.host_path("/tmp/x") == tmp_path / "tmp" / "x"
    assert layout.host_path("/root/.kube/config") == tmp_path / "home" / ".kube" / "config"
    for hidden in ("/home/someone/.kube/config", "/var/lib/x", "/run/docker.sock",
                   "/etc/shadow", "/etc/ssl/private/key.pem", "/opt/tool", "/"):
        assert layout.host_path(hidden) is None, hidden


def test_required_isolation_fails_instead_of_degrading(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = runtime_module.shutil.which
    monkeypatch.setattr(runtime_module.shutil, "which",
                        lambda name: None if name == "bwrap" else real_which(name))
    with pytest.raises(RuntimeError, match="required but unavailable: bwrap not found"):
        ContainerRuntime(tmp_path / "required", isolation="bwrap")
    degraded = ContainerRuntime(tmp_path / "auto")
    assert degraded.isolation == "none"
    assert degraded.describe().startswith("WARNING: pods are NOT isolated (bwrap not found")
    assert "SANDBOXKIT_DEVCLUSTER_ISOLATION=bwrap" in degraded.describe()


def test_confined_banner_says_what_pods_still_share(tmp_path: Path) -> None:
    confined = ContainerRuntime(tmp_path / "node")
    if confined.isolation != "bwrap":
        pytest.fail(f"pods cannot be confined on this machine: {confined.describe()}")
    text = confined.describe()
    assert "no capabilities" in text and "seccomp" in text
    assert "share this machine's network" in text
    if os.geteuid() == 0:
        assert confined.host_id is not None and confined.host_id[0] != 0


def test_an_unprivileged_exec_may_reopen_its_own_streams_and_the_log(tmp_path: Path) -> None:
    """/dev/stdout, /dev/stderr and PID 1's stdout belong to the pod's id, as in a container
    (scripts write `>&2` as `> /dev/stderr`; `> /proc/1/fd/1` writes to the pod's log)."""

    async def body() -> None:
        runtime = ContainerRuntime(tmp_path / "node")
        try:
            container = await runtime.start_container("pod", "main", ["sleep", "30"], {})
            proc = await runtime.exec("pod", "main", [
                "sh", "-c", "echo out > /dev/stdout; echo err > /dev/stderr; "
                "echo logged > /proc/1/fd/1"])
            out, err = await proc.communicate()
            assert (proc.returncode, out, err) == (0, b"out\n", b"err\n")
            container.signal(9)
            await container.wait()
            assert container.log_path.read_text().endswith(" stdout F logged\n")
        finally:
            await runtime.shutdown()

    asyncio.run(body())
