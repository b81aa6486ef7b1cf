"""``sandboxkit lab``: JupyterLab on the tutorials, with a cluster to run them against.

JupyterLab runs as a child process of this one rather than replacing it (no ``exec``):
this process holds the :class:`~sandboxkit.ClusterHandle`, so a devcluster it
started stops when JupyterLab exits -- and, being tied to this process, also when this
process is killed. Kernels inherit ``KUBECONFIG`` from the environment set here, so
``%sandbox_up`` in any notebook reaches the same cluster.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from .fallback import ensure_cluster

__all__ = ["lab_command", "run_lab"]


def lab_command(directory: Path, *, port: int | None = None, no_browser: bool = False,
                allow_root: bool = False) -> list[str]:
    """The JupyterLab argv: the same interpreter's ``jupyterlab``, rooted at ``directory``."""
    argv = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={directory}"]
    if port is not None:
        argv.append(f"--port={port}")
    if no_browser:
        argv.append("--no-browser")
    if allow_root:
        argv.append("--allow-root")
    return argv


def run_lab(directory: Path, *, port: int | None = None, no_browser: bool = False,
            allow_root: bool = False) -> int:
    """Run JupyterLab until it exits; returns its exit status.

    Ctrl-C reaches JupyterLab too (same process group), which asks for confirmation or
    shuts down; this process waits for it instead of dying first. SIGTERM is passed on.
    """
    directory = directory.expanduser().resolve()
    if not directory.is_dir():
        raise FileNotFoundError(f"no notebook directory {directory}: run `sandboxkit lab` "
                                "from the repository root or name a directory")
    with ensure_cluster() as cluster:
        print(f"sandboxkit lab: cluster {cluster.description}", file=sys.stderr, flush=True)
        if cluster.isolation:
            print(f"sandboxkit lab: {cluster.isolation}", file=sys.stderr, flush=True)
        child = subprocess.Popen(lab_command(directory, port=port, no_browser=no_browser,
                                             allow_root=allow_root))
        previous = signal.signal(signal.SIGTERM, lambda *_: child.terminate())
        try:
            while True:
                try:
                    return child.wait()
                except KeyboardInterrupt:
                    continue  # JupyterLab got the same SIGINT and decides
        finally:
            signal.signal(signal.SIGTERM, previous)
