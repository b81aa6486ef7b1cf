"""The seccomp filter every devcluster pod process runs under.

The user namespace and the empty capability sets already deny most of what an escape
needs; the filter refuses, for every process of a pod and its execs, the system calls that
have turned capabilities-in-a-user-namespace into host access in the past, or that no
sandboxed CI command needs. It follows Docker's default profile where the two overlap:

- file handles (``open_by_handle_at``, ``name_to_handle_at``): "shocker" opens any inode of
  a filesystem by number, ignoring the mount the process sees;
- mounts of every flavour (``mount``, ``umount2``, the new mount API, ``pivot_root``), so the
  pod's view of the host cannot be rearranged;
- new user namespaces (``unshare``/``clone`` with ``CLONE_NEWUSER``; ``clone3``, whose flags a
  filter cannot read, answers ENOSYS so libc falls back to ``clone``): no way to regain a
  full capability set, which is what ``bwrap --disable-userns`` would give, but without a
  second nested namespace that execs could not join as a non-root user;
- the kernel keyring (``keyctl``, ``add_key``, ``request_key``), ``bpf``, ``userfaultfd``,
  ``perf_event_open``: large attack surface, no use in a sandbox;
- other processes' memory (``ptrace``, ``process_vm_readv``/``writev``), and kernel or machine
  control (``kexec_*``, ``*_module``, ``reboot``, ``swapon``/``swapoff``, ``acct``, ``iopl``,
  ``ioperm``, ``quotactl``, ``syslog``).

Refused calls fail with EPERM (ENOSYS for ``clone3``), as under Docker, rather than killing
the process: a test runner probing for features keeps running. The filter is compiled with
libseccomp (through ``pyseccomp``), which handles each architecture's numbering and the
x32 ABI, into the BPF program ``bwrap --seccomp`` and :mod:`.nsexec` load.
"""

from __future__ import annotations

import errno
from pathlib import Path

__all__ = ["CLONE_NEWUSER", "DENIED_SYSCALLS", "SeccompUnavailable", "write_filter"]

CLONE_NEWUSER = 0x10000000

DENIED_SYSCALLS = (
    "open_by_handle_at", "name_to_handle_at",
    "mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr",
    "keyctl", "add_key", "request_key",
    "bpf", "userfaultfd", "perf_event_open",
    "ptrace", "process_vm_readv", "process_vm_writev",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "reboot", "swapon", "swapoff", "acct", "iopl", "ioperm", "quotactl", "syslog",
)


class SeccompUnavailable(RuntimeError):
    """libseccomp (Debian: libseccomp2) cannot be loaded, so no filter can be built."""


def write_filter(path: Path) -> Path:
    """Compile the pods' filter to ``path`` (BPF, as ``bwrap --seccomp`` reads it)."""
    try:
        try:
            import pyseccomp as seccomp
        except ImportError:  # conda-forge and Debian ship libseccomp's own, same API
            import seccomp  # type: ignore[no-redef]
    except (ImportError, RuntimeError, OSError) as exc:
        raise SeccompUnavailable(
            f"cannot load libseccomp ({exc}); install it (Debian: apt-get install libseccomp2)"
        ) from exc
    refuse = seccomp.ERRNO(errno.EPERM)
    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in DENIED_SYSCALLS:
        try:
            rules.add_rule(refuse, name)
        except (ValueError, RuntimeError, OSError):
            continue  # not a system call on this architecture (iopl on arm64, ...)
    new_user = seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER)
    rules.add_rule(refuse, "unshare", new_user)
    rules.add_rule(refuse, "clone", new_user)
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        rules.export_bpf(out)
    path.chmod(0o644)
    return path
