"""Use the cluster kubectl would use, or start a local one when there is none.

``sandboxkit demo``, ``sandboxkit lab`` and a notebook's first cell all need *a* cluster and
should not make a newcomer set one up first. :func:`ensure_cluster` decides "is a cluster
configured?" with the library's own resolution (:func:`kubeconfig_files` and
:func:`in_cluster`, the code :func:`connect` runs), so it never starts a devcluster where
sandboxes would have gone elsewhere. When it does start one, it points ``KUBECONFIG`` at it
for this process and its subprocesses (kubectl, JupyterLab's kernels), and the server is
tied to this process: it stops when the handle is closed or when this process dies, even
by SIGKILL, so a killed notebook kernel leaves no server running.

This is the one place outside the devcluster's own CLI and test fixtures that starts it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from .backends.kubernetes.client import connect, in_cluster, kubeconfig_files

if TYPE_CHECKING:
    from .devcluster import DevCluster

__all__ = ["ClusterHandle", "ensure_cluster"]


@dataclass
class ClusterHandle:
    """The cluster in use: ``kubeconfig`` (None in-cluster), whether this handle ``started``
    a devcluster, a one-line ``description`` for people and, for a devcluster, how its pods
    are ``isolation``-confined (or a warning that they are not)."""

    kubeconfig: Path | None
    started: bool
    description: str
    isolation: str = ""
    _devcluster: DevCluster | None = field(default=None, repr=False)
    _previous_kubeconfig: str | None = field(default=None, repr=False)

    def close(self) -> None:
        """Stop the devcluster this handle started and restore ``KUBECONFIG``; idempotent.
        A cluster that was already configured is left alone."""
        devcluster, self._devcluster = self._devcluster, None
        if devcluster is None:
            return
        try:
            devcluster.__exit__(None, None, None)
        finally:
            if self._previous_kubeconfig is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = self._previous_kubeconfig

    def __enter__(self) -> ClusterHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def ensure_cluster(*, directory: str | os.PathLike[str] | None = None) -> ClusterHandle:
    """The configured cluster, or a devcluster started now (in ``directory``, default a
    temporary one) with ``KUBECONFIG`` pointing at it until :meth:`ClusterHandle.close`.

    Configured means what kubectl would use: ``$KUBECONFIG`` naming an existing file,
    ``~/.kube/config``, or a pod's in-cluster config. A broken configuration raises
    :class:`~sandboxkit.errors.ConfigError` rather than being silently replaced.
    """
    files = kubeconfig_files()
    if files or in_cluster():
        conn = connect()  # validates the configuration; no API call
        conn.close()
        return ClusterHandle(files[0] if files else None, False, conn.source)

    from .devcluster import DevCluster

    previous = os.environ.get("KUBECONFIG")
    devcluster = DevCluster(None if directory is None else Path(directory))
    devcluster.__enter__()
    os.environ["KUBECONFIG"] = str(devcluster.kubeconfig_path)
    verb = "started here" if devcluster.started else "already running"
    return ClusterHandle(devcluster.kubeconfig_path, devcluster.started,
                         f"devcluster at {devcluster.url} ({verb})",
                         devcluster.info.isolation, devcluster, previous)
