"""Plain data passed between layers: no I/O, no Kubernetes client objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import CommandFailed

__all__ = ["CommandResult", "Resources", "SandboxStatus"]


@dataclass(frozen=True)
class Resources:
    """Container requests and limits as Kubernetes quantities (strings, validated by config)."""

    cpu_request: str = "250m"
    memory_request: str = "512Mi"
    cpu_limit: str = "1"
    memory_limit: str = "2Gi"

    def to_k8s(self) -> dict[str, dict[str, str]]:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


@dataclass(frozen=True)
class CommandResult:
    """What a command did. Text fields are decoded UTF-8 with replacement; bytes are exact.

    ``truncated`` says output beyond the configured limit was not kept in memory (it still
    reached any callback or file it was streamed to).
    """

    command: str
    exit_code: int
    stdout_bytes: bytes = b""
    stderr_bytes: bytes = b""
    duration: float = 0.0
    truncated: bool = False

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode("utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode("utf-8", errors="replace")

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def check_returncode(self) -> CommandResult:
        """Raise :class:`CommandFailed` for a non-zero exit; return self otherwise."""
        if self.exit_code != 0:
            raise CommandFailed(self)
        return self


@dataclass(frozen=True)
class SandboxStatus:
    """A snapshot of a sandbox's Job and pod, as widgets and diagnostics read it."""

    name: str
    namespace: str
    job_phase: str = "Unknown"  # Active, Complete, Failed, Deleting, Missing
    pod_name: str = ""
    pod_phase: str = ""
    container_state: str = ""  # waiting, running, terminated
    reason: str = ""
    message: str = ""
    node: str = ""
    pod_ip: str = ""
    restarts: int = 0
    image: str = ""
    created: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    events: tuple[dict[str, Any], ...] = ()

    @property
    def running(self) -> bool:
        return self.pod_phase == "Running" and self.container_state == "running"
