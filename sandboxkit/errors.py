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
    ├── Throttled                    the API kept answering 429 (or 5xx) "retry later"
    ├── BackendUnavailable           the Docker daemon (or another backend) cannot be reached
    ├── SandboxNotFound              attach(): no sandbox of that name (or not a sandbox)
    ├── SandboxGone                  the pod disappeared under a command
    ├── CommandTimeout               a command outlived its timeout (output so far attached)
    ├── CommandFailed                check=True and the command exited non-zero
    ├── ExecError                    the server refused or failed the exec itself (its Status)
    └── ExecProtocolError            the exec stream ended without a readable status
        └── SessionLost              an exec session ended under its command (output so far)

A command that exits non-zero is a result, not an error, unless ``check=True``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import CommandResult

__all__ = [
    "BackendUnavailable",
    "CommandFailed",
    "CommandTimeout",
    "ConfigError",
    "ExecError",
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
    "SessionLost",
    "StartupTimeout",
    "Throttled",
    "Unschedulable",
    "one_line",
]


def one_line(message: str) -> str:
    """``message`` on one line, each run of whitespace (newlines, vertical tabs...) one
    space: how a failure is shown where one line is promised, the CLI's ``error:`` line and
    a magic's UsageError, even when it quotes what the user typed."""
    return " ".join(message.split())


class SandboxError(Exception):
    """Base of every error sandboxkit raises on purpose."""


_SHOWN_LENGTH = 200


def _shown(value: object) -> str:
    """``repr(value)`` cut to a readable length, for quoting a rejected value in a message:
    a megabyte string must not flood the line, and an int of over 4300 digits, whose repr
    Python refuses, must not turn the ConfigError into a ValueError."""
    try:
        text = repr(value)
    except ValueError:
        return f"<{type(value).__name__} too long to show>"
    return text if len(text) <= _SHOWN_LENGTH else f"{text[:_SHOWN_LENGTH - 3]}..."


class ConfigError(SandboxError, ValueError):
    """An invalid setting; the message names the field, what it accepts and a valid example
    (``value`` keeps what was given, whole)."""

    def __init__(self, field: str, value: object, why: str, example: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"{field}={_shown(value)} is invalid: {why} (for example {example})")


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


class Throttled(SandboxError):
    """The API server asked to retry later (429 Too Many Requests, or a 5xx with
    Retry-After) on every attempt the retry policy allows: it is overloaded or throttles
    this client. ``code`` is its last answer, ``attempts`` how many were sent, ``waited``
    the seconds spent waiting between them."""

    def __init__(self, message: str, *, code: int = 429, attempts: int = 0,
                 waited: float = 0.0) -> None:
        self.code = code
        self.attempts = attempts
        self.waited = waited
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


class ExecError(SandboxError):
    """The server reported a failure that is not the command's exit status: the container
    is not running or not found, the runtime could not start the command, the upgrade was
    refused. ``reason`` and ``code`` come from the Kubernetes Status, kept whole in
    ``status``."""

    def __init__(
        self, message: str, *, reason: str = "", code: int | None = None,
        status: dict[str, Any] | None = None,
    ) -> None:
        self.reason = reason
        self.code = code
        self.status = status or {}
        super().__init__(message)


class ExecProtocolError(SandboxError):
    """The exec stream closed without a status we can trust; never read as exit code 0."""


class SessionLost(ExecProtocolError):
    """The persistent exec session ended while the command ran: its exit code is unknown;
    ``result`` holds the output so far (exit code -1). Backends raise SandboxGone instead
    when the pod or container went with it."""

    def __init__(self, message: str, result: CommandResult) -> None:
        super().__init__(message)
        self.result = result
