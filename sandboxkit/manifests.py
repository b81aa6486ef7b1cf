"""SandboxConfig -> batch/v1 Job manifest. Pure functions: no client, no I/O.

The seed design fixes the shape: label ``app=ci-fixer-sandbox``, ServiceAccount
``ci-fixer-sandbox``, one container idling on ``tail -f /dev/null``, backoffLimit 0,
``ttlSecondsAfterFinished``; sandboxkit adds a per-sandbox id label, an owner annotation,
no ServiceAccount token in the pod, a bounded lifetime and a short grace period.
"""

from __future__ import annotations

import getpass
import os
import socket
import uuid
from typing import Any

from .config import SANDBOX_APP_LABEL, SandboxConfig

__all__ = [
    "CONTAINER_NAME",
    "IDLE_COMMAND",
    "ID_LABEL",
    "OWNER_ANNOTATION",
    "job_manifest",
    "new_sandbox_name",
    "owner_description",
    "sandbox_selector",
]

CONTAINER_NAME = "sandbox"
IDLE_COMMAND = ("tail", "-f", "/dev/null")
ID_LABEL = "sandboxkit.io/sandbox-id"
OWNER_ANNOTATION = "sandboxkit.io/owner"


def new_sandbox_name() -> str:
    return f"sandbox-{uuid.uuid4().hex[:8]}"


def owner_description(kernel: str | None = None) -> str:
    """Who created a sandbox, so ``gc`` and people can tell whose it is."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    where = f"{user}@{socket.gethostname()} pid={os.getpid()}"
    return f"{where} kernel={kernel}" if kernel else where


def sandbox_selector(name: str | None = None) -> str:
    """Label selector for all sandboxes, or for one sandbox's Job and pod."""
    key, value = SANDBOX_APP_LABEL
    return f"{key}={value},{ID_LABEL}={name}" if name else f"{key}={value}"


def job_manifest(config: SandboxConfig, name: str, owner: str) -> dict[str, Any]:
    """The Job for one sandbox, named ``name`` in ``config.namespace``."""
    key, value = SANDBOX_APP_LABEL
    labels = {**config.labels, key: value, ID_LABEL: name}
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": config.image,
        "command": list(IDLE_COMMAND),
        "resources": config.resources.to_k8s(),
        "env": [{"name": k, "value": v} for k, v in config.env.items()],
    }
    if config.workdir:
        container["workingDir"] = config.workdir
    metadata: dict[str, Any] = {
        "name": name,
        "labels": labels,
        "annotations": {OWNER_ANNOTATION: owner},
    }
    if config.namespace:
        metadata["namespace"] = config.namespace
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": config.ttl_seconds_after_finished,
            "activeDeadlineSeconds": config.active_deadline_seconds,
            "template": {
                "metadata": {"labels": labels, "annotations": {OWNER_ANNOTATION: owner}},
                "spec": {
                    "serviceAccountName": config.service_account,
                    "automountServiceAccountToken": config.automount_service_account_token,
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": config.termination_grace_period_seconds,
                    "containers": [container],
                },
            },
        },
    }
