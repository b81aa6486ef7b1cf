"""The persistentvolume-controller's part for dynamically provisioned claims.

A new claim becomes Pending and is told, by event, that it waits for a pod (binding itself
happens when the scheduler places one: :func:`..volumes.bind_claims`). A deleted claim takes
its data with it, as the reclaim policy ``Delete`` of a default StorageClass does.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..resources import ResourceType
from ..volumes import CLAIMS, claim_dir, pending_status
from .base import Controller, controller_user

__all__ = ["COMPONENT", "PersistentVolumeController"]

COMPONENT = "persistentvolume-controller"
USER = controller_user("persistent-volume-binder")
WAITING = "waiting for first consumer to be created before binding"


class PersistentVolumeController(Controller):
    """Marks new claims Pending (WaitForFirstConsumer) and deletes a deleted claim's data."""

    name = COMPONENT

    def __init__(self, api: Any, node_dir: Path | None = None) -> None:
        super().__init__(api)
        self.node_dir = node_dir

    def observe(self, event_type: str, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt is not CLAIMS:
            return
        volume = (obj.get("spec") or {}).get("volumeName")
        if event_type == "DELETED":
            if volume and self.node_dir is not None:
                shutil.rmtree(claim_dir(self.node_dir, volume), ignore_errors=True)
        elif not (obj.get("status") or {}).get("phase"):
            self.queue.add((obj["metadata"]["namespace"], obj["metadata"]["name"]))

    def resync(self) -> None:
        for claim in self.api.list(CLAIMS)[0]:
            self.observe("ADDED", CLAIMS, claim)

    def reconcile(self, key: Any) -> None:
        namespace, name = key
        claim = self.api.get_or_none(CLAIMS, namespace, name)
        if claim is None:
            return
        if (claim.get("status") or {}).get("phase"):
            return
        claim["status"] = pending_status()
        claim = self.api.update(CLAIMS, claim, subresource="status", user=USER)
        self.api.record_event(claim, "Normal", "WaitForFirstConsumer", WAITING, COMPONENT)
