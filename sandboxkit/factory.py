"""``create_sandbox`` and ``attach_sandbox``: the backend-neutral entry points.

Callers that do not care where commands run (the agent, the CLI, the magics) ask for a
sandbox here; ``execution_backend`` (``EXECUTION_BACKEND`` in the environment, as in the
seed) picks the class.
"""

from __future__ import annotations

from typing import Any

from .backends import Sandbox, backend_class
from .config import SandboxConfig
from .errors import ConfigError

__all__ = ["attach_sandbox", "create_sandbox"]


def create_sandbox(config: SandboxConfig | None = None, **overrides: Any) -> Sandbox:
    """A new, not yet started sandbox for ``config`` with ``overrides`` applied.

    Nothing is created until ``init()``; ``with create_sandbox(...) as sandbox:`` starts it
    and tears it down at the end of the block::

        with create_sandbox(image="python:3.11") as sandbox:
            print(sandbox.run_command("python -V").stdout)

    ``pool="NAME"`` makes ``init()`` claim an idle sandbox of that warm pool
    (:class:`sandboxkit.pool.SandboxPool`) with this configuration, else start one cold.
    """
    resolved = SandboxConfig.resolve(config, **overrides)
    if resolved.pool is not None and resolved.execution_backend != "kubernetes":
        raise ConfigError("pool", resolved.pool, "warm pools hold Kubernetes sandboxes only",
                          "execution_backend='kubernetes'")
    cls = backend_class(resolved.execution_backend)
    return cls(config=resolved)  # type: ignore[call-arg]


def attach_sandbox(name: str, config: SandboxConfig | None = None, **overrides: Any) -> Sandbox:
    """Take over the running sandbox ``name`` on the configured backend (after a kernel
    restart, from another process): the backend-neutral :meth:`Sandbox.attach`.

    Raises :class:`~sandboxkit.errors.SandboxNotFound` when there is none of that name, and
    :class:`~sandboxkit.errors.SandboxGone` when it can no longer run commands.
    """
    resolved = SandboxConfig.resolve(config, **overrides)
    return backend_class(resolved.execution_backend).attach(name, config=resolved)
