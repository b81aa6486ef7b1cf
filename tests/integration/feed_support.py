"""Waits shared by the feed and widget tests.

Waits block on a Condition or an Event that the feed's own callbacks signal, bounded by
TIMEOUT: never a sleep loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from workload_support import TIMEOUT

from sandboxkit.models import SandboxStatus


class Recorder:
    """A feed subscriber that keeps every status it is given and lets a test wait for one."""

    def __init__(self) -> None:
        self.statuses: list[SandboxStatus] = []
        self._changed = threading.Condition()

    def __call__(self, status: SandboxStatus) -> None:
        with self._changed:
            self.statuses.append(status)
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[SandboxStatus], bool], *, since: int = 0,
                 timeout: float = TIMEOUT) -> SandboxStatus:
        """The first status recorded (already, or within ``timeout``) that satisfies it,
        looking only at those from the ``since``-th on."""
        def found() -> SandboxStatus | None:
            return next((s for s in self.statuses[since:] if predicate(s)), None)

        with self._changed:
            status = self._changed.wait_for(found, timeout)
        assert status is not None, [s.display_status for s in self.statuses]
        return status


def feed_threads(namespace: str) -> list[threading.Thread]:
    """The live watch threads of the feed for ``namespace``."""
    prefix = f"sandboxkit-feed-{namespace}-"
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]
