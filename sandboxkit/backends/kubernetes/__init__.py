"""The Kubernetes backend: API requests and watches, Job lifecycle, exec channel protocol,
file copy.

Names load on first access, so importing a helper module (``.client`` for rbac and
diagnostics) does not pull in the exec stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import lazy_attributes

if TYPE_CHECKING:
    from ...errors import ExecError
    from .client import Connection, connect
    from .exec import run_exec
    from .sandbox import KubernetesSandbox

__all__ = ["Connection", "ExecError", "KubernetesSandbox", "connect", "run_exec"]

__getattr__ = lazy_attributes(__name__, {
    "Connection": ".client",
    "connect": ".client",
    "ExecError": "...errors",
    "run_exec": ".exec",
    "KubernetesSandbox": ".sandbox",
})
