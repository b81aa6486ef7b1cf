"""The devcluster's controllers, as kube-controller-manager and kube-scheduler run them.

Each takes the in-process :class:`~sandboxkit.devcluster.api.Api`, is started with
``start()`` on the event loop and stopped with ``await stop()``. :func:`all_controllers`
builds the set a cluster runs, in the order they should start.
"""

from __future__ import annotations

from pathlib import Path

from ..api import Api
from .base import Controller, WorkQueue
from .gc import GarbageCollector
from .job import JobController
from .namespace import NamespaceController
from .quota import ResourceQuotaController
from .scheduler import NodeOptions, Scheduler, ensure_node
from .ttl import TTLAfterFinishedController
from .volumes import PersistentVolumeController

__all__ = [
    "Controller",
    "GarbageCollector",
    "JobController",
    "NamespaceController",
    "NodeOptions",
    "PersistentVolumeController",
    "ResourceQuotaController",
    "Scheduler",
    "TTLAfterFinishedController",
    "WorkQueue",
    "all_controllers",
    "ensure_node",
]


def all_controllers(
    api: Api, *, node: NodeOptions | None = None, root_ca_pem: str | None = None,
    node_dir: Path | None = None,
) -> list[Controller]:
    """Every controller, namespace upkeep first so ``default`` ServiceAccounts exist early.

    ``node_dir`` is the kubelet's directory, where claims keep their data.
    """
    return [
        NamespaceController(api, root_ca_pem=root_ca_pem),
        ResourceQuotaController(api),
        GarbageCollector(api),
        PersistentVolumeController(api, node_dir),
        Scheduler(api, node),
        JobController(api),
        TTLAfterFinishedController(api),
    ]
