"""The Docker backend: a container per sandbox, commands through the exec API, files as tar.

Importing this package checks for the Docker SDK (an optional extra) at once and raises
:class:`~sandboxkit.errors.BackendUnavailable` naming ``pip install 'sandboxkit[docker]'``
without it (:mod:`.client`). The other names load on first access, as in
:mod:`sandboxkit.backends.kubernetes`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import lazy_attributes
from .client import docker_client

if TYPE_CHECKING:
    from .exec import run_exec
    from .sandbox import DEADLINE_LABEL, DockerSandbox

__all__ = ["DEADLINE_LABEL", "DockerSandbox", "docker_client", "run_exec"]

__getattr__ = lazy_attributes(__name__, {
    "DEADLINE_LABEL": ".sandbox",
    "DockerSandbox": ".sandbox",
    "run_exec": ".exec",
})
