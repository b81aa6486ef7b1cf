"""Execution backends behind the Sandbox contract.

``BACKENDS`` maps ``SandboxConfig.execution_backend`` to the class implementing it, as an
import path so that choosing a backend imports only that backend. A new backend is one entry
here (plus its name in ``config.BACKENDS``) and one parametrize entry in the contract tests.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .base import Sandbox

if TYPE_CHECKING:
    from .kubernetes.sandbox import KubernetesSandbox

__all__ = ["BACKENDS", "KubernetesSandbox", "Sandbox", "backend_class", "lazy_attributes"]

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


def lazy_attributes(package: str, lazy: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports each name in ``lazy`` from its
    module (relative to ``package``) on first access, and keeps it: a backend package's
    names then cost nothing until used, so importing one helper module does not pull in a
    whole exec stack."""

    def __getattr__(name: str) -> Any:
        if name not in lazy:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(lazy[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__


def __getattr__(name: str) -> object:
    if name == "KubernetesSandbox":
        return backend_class("kubernetes")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
