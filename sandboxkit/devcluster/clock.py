"""Timestamps in the forms the Kubernetes API uses."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["now", "parse_time", "rfc3339", "rfc3339_micro"]


def now() -> datetime:
    return datetime.now(UTC)


def rfc3339(when: datetime | None = None) -> str:
    """``metav1.Time``: second precision, ``Z`` suffix."""
    return (when or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(when: datetime | None = None) -> str:
    """``metav1.MicroTime``, used by events.k8s.io eventTime and lease renewals."""
    return (when or now()).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
