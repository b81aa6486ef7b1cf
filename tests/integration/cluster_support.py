"""Helpers for tests of the no-cluster fallback (``ensure_cluster``, ``sandboxkit demo``
and ``lab``): an environment in which kubectl would find no cluster, and process checks
that wait on a pidfd instead of sleeping."""

from __future__ import annotations

import os
import select
from pathlib import Path

__all__ = ["mentioning", "no_cluster_env", "wait_exit"]


def no_cluster_env(root: Path) -> dict[str, str]:
    """This process's environment without a cluster: no ``KUBECONFIG``, no in-cluster
    variables, ``HOME`` (so no ``~/.kube/config``) and ``TMPDIR`` (where a devcluster gets
    its directory) under ``root``."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")}
    for name in ("home", "tmp"):
        (root / name).mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(root / "home")
    env["TMPDIR"] = str(root / "tmp")
    return env


def mentioning(text: str) -> list[str]:
    """Live processes (not zombies) whose command line contains ``text``, as ``pid: argv``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes()
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if text.encode() in argv and stat[stat.rindex(")") + 2] not in "ZX":
            shown = argv.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry}: {shown}")
    return found


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait until process ``pid`` (not necessarily our child) exits; False on timeout."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([pidfd], [], [], timeout)[0])
    finally:
        os.close(pidfd)
