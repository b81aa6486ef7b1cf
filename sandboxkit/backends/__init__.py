"""Execution backends behind the Sandbox contract.

``BACKENDS`` maps ``SandboxConfig.execution_backend`` to the class implementing it, as an
import path so that choosing a backend imports only that backend. A new backend is one entry
here (plus its name in ``config.BACKENDS``) and one parametrize entry in the contract tests.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .base import Sandbox

if TYPE_CHECKING:
    from .kubernetes.sandbox import KubernetesSandbox

__all__ = ["BACKENDS", "KubernetesSandbox", "Sandbox", "backend_class"]

BACKENDS: dict[str, str] = {
    "kubernetes": "sandboxkit.backends.kubernetes.sandbox:KubernetesSandbox",
    "docker": "sandboxkit.backends.docker.sandbox:DockerSandbox",
    "local": "sandboxkit.backends.local:LocalSandbox",
}


def backend_class(name: str) -> type[Sandbox]:
    """The Sandbox class for ``execution_backend`` ``name``."""
    from ..errors import ConfigError

    try:
        module, attribute = BACKENDS[name].split(":")
    except KeyError:
        raise ConfigError("execution_backend", name,
                          f"supported backends are {', '.join(BACKENDS)}", "kubernetes") from None
    cls: type[Sandbox] = getattr(importlib.import_module(module), attribute)
    return cls


def __getattr__(name: str) -> object:
    if name == "KubernetesSandbox":
        return backend_class("kubernetes")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
