"""sandboxkit: run and debug code in Kubernetes sandboxes from a notebook.

``import sandboxkit`` stays light: the config, models and errors are plain Python, and the
backend (which imports the ``kubernetes`` client, about half a second) loads on first use of
``KubernetesSandbox`` or ``create_sandbox``. IPython and ipywidgets are never imported here:
``load_ipython_extension`` imports :mod:`sandboxkit.magics` when IPython calls it.

Every error type is here too, so ``except sandboxkit.CommandTimeout`` works without knowing
which module raises it (the tree is drawn in :mod:`sandboxkit.errors`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import SandboxConfig
from .errors import (
    BackendUnavailable,
    CommandFailed,
    CommandTimeout,
    ConfigError,
    ExecError,
    ExecProtocolError,
    ImagePullError,
    PermissionDenied,
    PodSecurityViolation,
    QuotaExceeded,
    SandboxError,
    SandboxGone,
    SandboxNotFound,
    SandboxStartupError,
    ServiceAccountMissing,
    SessionLost,
    StartupTimeout,
    Throttled,
    Unschedulable,
)
from .models import CommandResult, SandboxStatus

# Tells the widgets how ``StatusPanel(sb)`` and ``ListPanel("ci")`` get their status source;
# light (models and the widgets' protocols; the feed and diagnostics load when first used).
from .sources import sandbox_source as _sandbox_source  # noqa: F401

if TYPE_CHECKING:
    from .backends.base import Sandbox
    from .backends.kubernetes.sandbox import KubernetesSandbox
    from .backends.sync import Diff, SyncReport
    from .diagnostics import diagnose, preflight
    from .factory import attach_sandbox, create_sandbox

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable",
    "ClusterHandle",
    "CommandFailed",
    "CommandResult",
    "CommandTimeout",
    "ConfigError",
    "Diff",
    "ExecError",
    "ExecProtocolError",
    "ImagePullError",
    "KubernetesSandbox",
    "PermissionDenied",
    "PodSecurityViolation",
    "QuotaExceeded",
    "Sandbox",
    "SandboxConfig",
    "SandboxError",
    "SandboxGone",
    "SandboxNotFound",
    "SandboxStartupError",
    "SandboxStatus",
    "ServiceAccountMissing",
    "SessionLost",
    "StartupTimeout",
    "SyncReport",
    "Throttled",
    "Unschedulable",
    "__version__",
    "attach_sandbox",
    "create_sandbox",
    "diagnose",
    "ensure_cluster",
    "load_ipython_extension",
    "preflight",
    "unload_ipython_extension",
]

_LAZY = {
    "KubernetesSandbox": ("sandboxkit.backends.kubernetes.sandbox", "KubernetesSandbox"),
    "ClusterHandle": ("sandboxkit.fallback", "ClusterHandle"),
    "Sandbox": ("sandboxkit.backends.base", "Sandbox"),
    "Diff": ("sandboxkit.backends.sync", "Diff"),
    "SyncReport": ("sandboxkit.backends.sync", "SyncReport"),
    "attach_sandbox": ("sandboxkit.factory", "attach_sandbox"),
    "create_sandbox": ("sandboxkit.factory", "create_sandbox"),
    "diagnose": ("sandboxkit.diagnostics", "diagnose"),
    "ensure_cluster": ("sandboxkit.fallback", "ensure_cluster"),
    "preflight": ("sandboxkit.diagnostics", "preflight"),
}


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext sandboxkit``: the sandbox magics; IPython is imported only now."""
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext sandboxkit``: delete the kernel's unkept sandboxes, drop the magics."""
    from .magics import unload_ipython_extension as unload

    unload(ipython)


def __getattr__(name: str) -> Any:
    """Import the heavier parts of the public API on first access (PEP 562)."""
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sandboxkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
