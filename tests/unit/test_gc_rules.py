"""The garbage-collection rules that a cluster cannot be made to show on demand: a Job the
Job controller has not yet failed past its deadline, a suspended one, and the owner format."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

from sandboxkit.backends.kubernetes.status import sandbox_status
from sandboxkit.inventory import gc_reason
from sandboxkit.manifests import OWNER_ANNOTATION, owner_description, owner_process

NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
HOST = socket.gethostname()


def job(*, deadline: int, started: datetime | None, owner: str = "") -> dict[str, Any]:
    status = {"startTime": started.isoformat()} if started else {}
    return {"metadata": {"name": "sandbox-1", "namespace": "ns",
                         "creationTimestamp": (NOW - timedelta(days=1)).isoformat(),
                         "annotations": {OWNER_ANNOTATION: owner}},
            "spec": {"activeDeadlineSeconds": deadline, "template": {"spec": {}}},
            "status": status}


def reason(obj: dict[str, Any]) -> str | None:
    return gc_reason(obj, sandbox_status("sandbox-1", "ns", obj, None, []), now=NOW, host=HOST)


def test_an_active_job_past_its_deadline_is_collected_before_the_controller_fails_it() -> None:
    late = job(deadline=60, started=NOW - timedelta(seconds=61), owner=owner_description())
    assert "activeDeadlineSeconds=60" in (reason(late) or "")
    assert reason(job(deadline=60, started=NOW - timedelta(seconds=59),
                      owner=owner_description())) is None


def test_a_suspended_job_has_no_deadline_running() -> None:
    assert reason(job(deadline=60, started=None, owner=owner_description())) is None


def test_owner_description_names_this_host_and_process() -> None:
    assert owner_process(owner_description(kernel="k-1")) == (HOST, os.getpid())
    assert owner_process("written by hand") is None


def test_a_live_owner_keeps_its_sandbox() -> None:
    assert reason(job(deadline=3600, started=NOW, owner=owner_description())) is None
