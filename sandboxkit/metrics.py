"""Prometheus metrics for sandboxes: how many start, how long that takes, why they fail,
and how long commands run.

Everything is registered in :data:`REGISTRY`, a registry of sandboxkit's own rather than
prometheus_client's global default: importing sandboxkit never adds series to an
application's ``/metrics``, and the application decides whether and where to expose them::

    from prometheus_client import start_http_server
    from sandboxkit.metrics import REGISTRY

    start_http_server(9100, registry=REGISTRY)      # or generate_latest(REGISTRY)

Backends report through the ``record_*`` functions, never the metric objects, so each
measurement is defined once: command durations in :class:`sandboxkit.backends.base.Sandbox`
(every backend's commands pass there), the lifecycle where each backend's ``init()``,
``attach`` and ``teardown()`` happen. Label values stay few: the backend name and, for
failures, the Kubernetes reason (ErrImagePull, Unschedulable, Timeout...), never a sandbox
name.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .errors import CommandTimeout, PermissionDenied

__all__ = [
    "COMMAND_DURATION",
    "COMMAND_ERRORS",
    "REGISTRY",
    "SANDBOXES_ACTIVE",
    "SANDBOXES_CREATED",
    "SANDBOXES_FAILED",
    "STARTUP_DURATION",
    "failure_reason",
    "record_attached",
    "record_command",
    "record_command_error",
    "record_created",
    "record_failed",
    "record_started",
    "record_stopped",
]

REGISTRY = CollectorRegistry(auto_describe=True)

SANDBOXES_CREATED = Counter(
    "sandboxkit_sandboxes_created", "Sandboxes created (the Job or container was accepted).",
    ["backend"], registry=REGISTRY)
SANDBOXES_ACTIVE = Gauge(
    "sandboxkit_sandboxes_active",
    "Sandboxes this process started or attached to and has not torn down.",
    ["backend"], registry=REGISTRY)
SANDBOXES_FAILED = Counter(
    "sandboxkit_sandboxes_failed",
    "Sandbox startups that failed, by reason (ErrImagePull, Unschedulable, Forbidden, "
    "Timeout...).",
    ["backend", "reason"], registry=REGISTRY)
# From a warm local start (well under a second) to a cold image pull on a busy cluster.
STARTUP_DURATION = Histogram(
    "sandboxkit_startup_seconds", "Time from init() to a sandbox ready for commands.",
    ["backend"], registry=REGISTRY,
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600))
# From `true` over exec (milliseconds) to a test suite (the default timeout is ten minutes).
COMMAND_DURATION = Histogram(
    "sandboxkit_command_duration_seconds",
    "Wall time of commands run in sandboxes (run_command and stream), timeouts included.",
    ["backend"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
             1800))
COMMAND_ERRORS = Counter(
    "sandboxkit_command_errors",
    "Commands that raised instead of returning a result (Timeout, or why the sandbox went "
    "away: DeadlineExceeded, Evicted, Deleted...). A non-zero exit is a result, not an error.",
    ["backend", "reason"], registry=REGISTRY)


def failure_reason(error: BaseException) -> str:
    """The label a failure is counted under: the typed error's Kubernetes reason when it
    has one, ``Forbidden`` for an RBAC denial, ``Timeout`` for a command timeout, else the
    exception's class name (``KeyboardInterrupt``, ``ApiException``)."""
    reason = getattr(error, "reason", None)
    if isinstance(reason, str) and reason:
        return reason
    if isinstance(error, PermissionDenied):
        return "Forbidden"
    if isinstance(error, CommandTimeout):
        return "Timeout"
    return type(error).__name__


def record_created(backend: str) -> None:
    """The sandbox exists (its Job or container was accepted); startup has begun."""
    SANDBOXES_CREATED.labels(backend).inc()


def record_started(backend: str, seconds: float) -> None:
    """The sandbox became ready ``seconds`` after ``init()`` began; it now counts as active
    until :func:`record_stopped`."""
    STARTUP_DURATION.labels(backend).observe(seconds)
    SANDBOXES_ACTIVE.labels(backend).inc()


def record_attached(backend: str) -> None:
    """This process took over a running sandbox (no creation, no startup to time)."""
    SANDBOXES_ACTIVE.labels(backend).inc()


def record_failed(backend: str, error: BaseException) -> None:
    """``init()`` failed with ``error``; counted by :func:`failure_reason`."""
    SANDBOXES_FAILED.labels(backend, failure_reason(error)).inc()


def record_stopped(backend: str) -> None:
    """A sandbox counted by :func:`record_started` or :func:`record_attached` was torn
    down. Call it once per sandbox: teardown is idempotent, this is not."""
    SANDBOXES_ACTIVE.labels(backend).dec()


def record_command(backend: str, seconds: float) -> None:
    COMMAND_DURATION.labels(backend).observe(seconds)


def record_command_error(backend: str, error: BaseException) -> None:
    COMMAND_ERRORS.labels(backend, failure_reason(error)).inc()
