"""Typed errors, so callers (an agent, a magic, a test) can react to what went wrong.

::

    SandboxError
    ├── ConfigError                  a setting is invalid; raised before any API call
    ├── SandboxStartupError          init() could not bring the sandbox to Running
    │   ├── ImagePullError           ErrImagePull / ImagePullBackOff / InvalidImageName
    │   ├── Unschedulable            the scheduler found no node (FailedScheduling)
    │   ├── QuotaExceeded            a ResourceQuota rejected the pod (FailedCreate)
    │   ├── ServiceAccountMissing    the pod's ServiceAccount does not exist
    │   ├── PodSecurityViolation     the namespace's Pod Security level refused the pod
    │   └── StartupTimeout           nothing failed, but Running never came
    ├── PermissionDenied             the API answered 403 (verb, resource, identity)
    ├── BackendUnavailable           the Docker daemon (or another backend) cannot be reached
    ├── SandboxNotFound              attach(): no sandbox of that name (or not a sandbox)
    ├── SandboxGone                  the pod disappeared under a command
    ├── CommandTimeout               a command outlived its timeout (output so far attached)
    ├── CommandFailed                check=True and the command exited non-zero
    └── ExecProtocolError            the exec stream ended without a readable status

A command that exits non-zero is a result, not an error, unless ``check=True``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import CommandResult

__all__ = [
    "BackendUnavailable",
    "CommandFailed",
    "CommandTimeout",
    "ConfigError",
    "ExecProtocolError",
    "ImagePullError",
    "PermissionDenied",
    "PodSecurityViolation",
    "QuotaExceeded",
    "SandboxError",
    "SandboxGone",
    "SandboxNotFound",
    "SandboxStartupError",
    "ServiceAccountMissing",
    "StartupTimeout",
    "Unschedulable",
]


class SandboxError(Exception):
    """Base of every error sandboxkit raises on purpose."""


class ConfigError(SandboxError, ValueError):
    """An invalid setting; the message names the field and a valid example."""

    def __init__(self, field: str, value: object, why: str, example: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"{field}={value!r} is invalid: {why} (for example {example})")


class SandboxStartupError(SandboxError):
    """init() failed; ``sandbox`` names the Job, ``reason`` the Kubernetes reason."""

    def __init__(self, message: str, *, sandbox: str = "", reason: str = "") -> None:
        self.sandbox = sandbox
        self.reason = reason
        super().__init__(message)


class ImagePullError(SandboxStartupError):
    def __init__(self, message: str, *, image: str, sandbox: str = "", reason: str = "") -> None:
        self.image = image
        super().__init__(message, sandbox=sandbox, reason=reason)


class Unschedulable(SandboxStartupError):
    pass


class QuotaExceeded(SandboxStartupError):
    pass


class ServiceAccountMissing(SandboxStartupError):
    pass


class PodSecurityViolation(SandboxStartupError):
    """Pod Security admission refused the pod; ``level`` is the enforced one
    (``restricted:latest``)."""

    def __init__(self, message: str, *, level: str, sandbox: str = "", reason: str = "") -> None:
        self.level = level
        super().__init__(message, sandbox=sandbox, reason=reason)


class StartupTimeout(SandboxStartupError):
    pass


class PermissionDenied(SandboxError):
    """A 403 from the API, with what was refused and to whom."""

    def __init__(
        self, message: str, *, verb: str = "", resource: str = "", namespace: str = "",
        identity: str = "",
    ) -> None:
        self.verb = verb
        self.resource = resource
        self.namespace = namespace
        self.identity = identity
        super().__init__(message)


class BackendUnavailable(SandboxError, ConnectionError):
    """The execution backend itself cannot be reached (no Docker daemon at ``DOCKER_HOST``);
    the message says where it was looked for and how to point sandboxkit at it."""


class SandboxNotFound(SandboxError, LookupError):
    """``attach()`` found no Job of that name, or one that is not a sandbox."""

    def __init__(self, message: str, *, name: str = "", namespace: str = "") -> None:
        self.name = name
        self.namespace = namespace
        super().__init__(message)


class SandboxGone(SandboxError):
    """The sandbox's pod went away (deleted, evicted, deadline) while in use.

    ``reason`` is Kubernetes' (DeadlineExceeded, Evicted, OOMKilled, Deleted...); ``result``
    holds the output of a command that was running when it happened, if any.
    """

    def __init__(self, message: str, *, reason: str = "",
                 result: CommandResult | None = None) -> None:
        self.reason = reason
        self.result = result
        super().__init__(message)


class CommandTimeout(SandboxError):
    """The command was killed after ``timeout`` seconds; ``result`` holds its output so far."""

    def __init__(self, command: str, timeout: float, result: CommandResult) -> None:
        self.command = command
        self.timeout = timeout
        self.result = result
        super().__init__(f"command timed out after {timeout:g}s and was killed: {command}")


class CommandFailed(SandboxError):
    """Raised by ``check=True`` (or ``check_returncode()``) for a non-zero exit."""

    def __init__(self, result: CommandResult) -> None:
        self.result = result
        tail = result.stderr.strip().splitlines()[-1:] if result.stderr else []
        detail = f": {tail[0]}" if tail else ""
        super().__init__(f"command exited with {result.exit_code}{detail}: {result.command}")


class ExecProtocolError(SandboxError):
    """The exec stream closed without a status we can trust; never read as exit code 0."""
