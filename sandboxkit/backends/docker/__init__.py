"""The Docker backend: a container per sandbox, commands through the exec API, files as tar.

Importing this package checks for the Docker SDK (an optional extra) at once and raises
:class:`~sandboxkit.errors.BackendUnavailable` naming ``pip install 'sandboxkit[docker]'``
without it (:mod:`.client`). The other names load on first access, as in
:mod:`sandboxkit.backends.kubernetes`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .client import docker_client

if TYPE_CHECKING:
    from .exec import run_exec
    from .sandbox import DEADLINE_LABEL, DockerSandbox

__all__ = ["DEADLINE_LABEL", "DockerSandbox", "docker_client", "run_exec"]

_LAZY = {
    "DEADLINE_LABEL": ".sandbox",
    "DockerSandbox": ".sandbox",
    "run_exec": ".exec",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
