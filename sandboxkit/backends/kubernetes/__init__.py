"""The Kubernetes backend: API requests and watches, Job lifecycle, exec channel protocol,
file copy.

Names load on first access, so importing a helper module (``.client`` for rbac and
diagnostics) does not pull in the exec stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...errors import ExecError
    from .client import Connection, connect
    from .exec import run_exec
    from .sandbox import KubernetesSandbox

__all__ = ["Connection", "ExecError", "KubernetesSandbox", "connect", "run_exec"]

_LAZY = {
    "Connection": ".client",
    "connect": ".client",
    "ExecError": "...errors",
    "run_exec": ".exec",
    "KubernetesSandbox": ".sandbox",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
