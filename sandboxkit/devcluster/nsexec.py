"""Put the calling process under the pods' seccomp filter, then exec a command.

Usage: ``python -I -S nsexec.py FILTER.bpf COMMAND [ARG...]``.

An exec joins a running pod with ``nsenter``, which the devcluster starts, so it does not
inherit the filter bubblewrap gave the pod's main process. This script runs first, on the
host: it sets ``no_new_privs`` (required to load a filter without CAP_SYS_ADMIN, and so
that no setuid binary or file capability in the pod grants anything) and loads the same
BPF program, then execs ``nsenter`` with the rest of the command line. A filter survives
``setns`` and ``execve``, so everything the exec starts inside the pod is held by it.

It is run by path with ``-I -S`` so that it imports nothing but the standard library:
starting it costs a Python start-up and no more.
"""

import ctypes
import os
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
BPF_INSTRUCTION_SIZE = 8  # struct sock_filter: u16 code, u8 jt, u8 jf, u32 k


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def _prctl(libc: ctypes.CDLL, what: str, *args: object) -> None:
    if libc.prctl(*args, *(0,) * (5 - len(args))) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def confine(filter_path: str) -> None:
    """no_new_privs, then the filter read from ``filter_path``; raises OSError on failure."""
    with open(filter_path, "rb") as source:
        program = source.read()
    if not program or len(program) % BPF_INSTRUCTION_SIZE:
        raise OSError(f"{filter_path} is not a BPF program")
    libc = ctypes.CDLL(None, use_errno=True)
    fprog = _SockFprog(len(program) // BPF_INSTRUCTION_SIZE, program)
    _prctl(libc, "setting no_new_privs", PR_SET_NO_NEW_PRIVS, 1)
    _prctl(libc, "loading the seccomp filter", PR_SET_SECCOMP, SECCOMP_MODE_FILTER,
           ctypes.byref(fprog))
def main(argv: list[str]) -> None:
    if len(argv) < 3:
        sys.exit("usage: nsexec.py FILTER.bpf COMMAND [ARG...]")
    try:
        confine(argv[1])
        os.execvp(argv[2], argv[2:])
    except OSError as exc:
        sys.exit(f"nsexec: {exc}")


if __name__ == "__main__":
    main(sys.argv)
