"""What is wrong with a sandbox, or with a namespace before one starts, and how to fix it.

:func:`diagnose` reads one sandbox's Job, pods and events (and asks the authorizer where a
permission decides); :func:`preflight` checks a namespace before any sandbox exists. Both
return a :class:`Diagnosis`: findings with a severity, what happened, the cluster's own
words as evidence, and the command or manifest change that fixes it.
"""

from __future__ import annotations

from .diagnose import diagnose
from .preflight import preflight
from .report import Diagnosis, Finding

__all__ = ["Diagnosis", "Finding", "diagnose", "preflight"]
