"""A devcluster run by an unprivileged user, for the escape suite (test_escape.py).

The suite must hold both when root runs the devcluster (CI) and when an ordinary user does
(a laptop). When the tests run as root, :func:`unprivileged_devcluster` starts a second
devcluster as ``nobody``. That user must be able to run this interpreter and import this
checkout, which often live under a directory closed to others (``/root/.pyenv``); then the
server runs in a private mount namespace (bubblewrap, as root) where such a directory is
replaced by an empty one holding only those paths, read-only. Nothing else differs from a
devcluster started by hand as that user.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534
READY_TIMEOUT = 60.0


def _closed_ancestor(path: Path) -> Path | None:
    """The outermost directory above ``path`` that others cannot traverse, if any."""
    for parent in reversed(path.parents):
        if parent != Path("/") and not os.stat(parent).st_mode & 0o001:
            return parent
    return None


def as_user(argv: list[str], uid: int) -> list[str]:
    """``argv`` run as ``uid`` (with no groups), this interpreter and checkout reachable."""
    needed = [Path(p).resolve() for p in (sys.base_prefix, sys.prefix, REPO)]
    setpriv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
    closed = {top: [p for p in needed if _closed_ancestor(p) == top]
              for top in {_closed_ancestor(p) for p in needed} - {None}}
    if not closed:
        return setpriv + argv
    view = ["bwrap", "--dev-bind", "/", "/", "--cap-add", "ALL", "--die-with-parent"]
    for top, paths in closed.items():
        view += ["--perms", "0755", "--tmpfs", str(top)]
        for path in paths:
            between = [p for p in reversed(path.parents) if p.is_relative_to(top) and p != top]
            for directory in between:  # bubblewrap would make them 0700
                view += ["--perms", "0755", "--dir", str(directory)]
            view += ["--ro-bind", str(path), str(path)]
    return [*view, "--", *setpriv, *argv]


@contextlib.contextmanager
def unprivileged_devcluster(uid: int = NOBODY) -> Iterator[Path]:
    """A devcluster run by ``uid``; yields its (admin) kubeconfig. Stops it on exit."""
    directory = Path(tempfile.mkdtemp(prefix="sandboxkit-escape-"))
    os.chown(directory, uid, uid)
    read_fd, write_fd = os.pipe()
    log = open(directory.with_suffix(".log"), "wb")  # noqa: SIM115 -- closed below
    server = subprocess.Popen(
        as_user([sys.executable, "-m", "sandboxkit.devcluster", "run", "--dir", str(directory),
                 "--ready-fd", str(write_fd), "--watch-pid", str(os.getpid())], uid),
        pass_fds=(write_fd,), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(directory)},
        start_new_session=True,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as ready:
            answered, _, _ = select.select([ready], [], [], READY_TIMEOUT)
            line = ready.readline() if answered else b""
        if not line.startswith(b"ready "):
            server.kill()
            server.wait()
            raise RuntimeError("the unprivileged devcluster did not start:\n"
                               + directory.with_suffix(".log").read_text(errors="replace"))
        yield directory / "kubeconfig"
    finally:
        with contextlib.suppress(ProcessLookupError):  # the server, not just bubblewrap
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        shutil.rmtree(directory, ignore_errors=True)
        directory.with_suffix(".log").unlink(missing_ok=True)
