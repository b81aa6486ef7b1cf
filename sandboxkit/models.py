"""Plain data passed between layers: no I/O, no Kubernetes client objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .errors import CommandFailed

__all__ = ["CommandResult", "Resources", "SandboxStatus", "kube_age"]


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
    # Latest events, oldest first: dicts with type, reason, message, count, time, object.
    events: tuple[dict[str, Any], ...] = ()
    # The Job's status counts and conditions (dicts with type, status, reason, message).
    job_active: int = 0
    job_succeeded: int = 0
    job_failed: int = 0
    job_conditions: tuple[dict[str, str], ...] = ()
    exit_code: int | None = None  # of a terminated container
    requests: dict[str, str] = field(default_factory=dict)
    limits: dict[str, str] = field(default_factory=dict)
    deleting: bool = False  # the Job or the pod has a deletionTimestamp

    @property
    def running(self) -> bool:
        return self.pod_phase == "Running" and self.container_state == "running"

    @property
    def gone(self) -> bool:
        """The Job no longer exists (deleted, or never created)."""
        return self.job_phase == "Missing"

    @property
    def display_status(self) -> str:
        """One word, as the STATUS column of ``kubectl get pods`` words it (Running,
        ContainerCreating, ImagePullBackOff, OOMKilled, Terminating ...), extended to a
        sandbox with no pod: the Job's phase, Pending while the pod is being made, Gone."""
        if self.gone:
            return "Gone"
        if self.deleting:
            return "Terminating"
        if not self.pod_name:
            return "Pending" if self.job_phase == "Active" else self.job_phase
        if self.container_state in ("waiting", "terminated") and self.reason:
            return self.reason
        if self.container_state == "terminated" and self.exit_code is not None:
            return f"ExitCode:{self.exit_code}"
        return self.pod_phase or "Unknown"

    def age(self, now: datetime | None = None) -> str:
        """Time since the sandbox was created, as kubectl's AGE column shows it."""
        return kube_age(self.created, now)


def kube_age(timestamp: str, now: datetime | None = None) -> str:
    """``now - timestamp`` (RFC 3339, as the API writes it) the way kubectl prints ages:
    ``45s``, ``3m12s``, ``25m``, ``5h3m``, ``2d4h``; ``<unknown>`` without a timestamp.

    Same thresholds as k8s.io/apimachinery's ``duration.HumanDuration``, so a widget and
    ``kubectl get`` beside it agree.
    """
    try:
        then = datetime.fromisoformat(timestamp)
    except (TypeError, ValueError):
        return "<unknown>"
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return _units(minutes, "m", seconds % 60, "s")
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return _units(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 8:
        return _units(days, "d", hours % 24, "h")
    if days < 365 * 2:
        return f"{days}d"
    if days < 365 * 8:
        return _units(days // 365, "y", days % 365, "d")
    return f"{days // 365}y"


def _units(major: int, major_unit: str, minor: int, minor_unit: str) -> str:
    return f"{major}{major_unit}{minor}{minor_unit}" if minor else f"{major}{major_unit}"
