"""PersistentVolumeClaims as a cluster with a default WaitForFirstConsumer StorageClass has them.

Such a cluster (kind's ``standard`` class, most cloud defaults) leaves a new claim Pending
-- ``WaitForFirstConsumer: waiting for first consumer to be created before binding`` -- until
the scheduler places a pod that uses it; the scheduler's VolumeBinding step then provisions
a volume on that node and binds the claim. Its PreFilter refuses pods whose claim does not
exist or is being deleted, in words (``persistentvolumeclaim "x" not found``) that the
FailedScheduling event repeats. The devcluster does the same with a host directory per
claim under the node's directory: it outlives the pods that mount it and goes with the
claim (reclaim policy Delete). There are no PersistentVolume or StorageClass objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import clock
from .api import Api
from .resources import require

__all__ = [
    "PROVISIONER",
    "bind_claims",
    "claim_dir",
    "claim_names",
    "claim_problem",
    "pending_status",
    "volume_name",
]

CLAIMS = require("", "v1", "persistentvolumeclaims")
PROVISIONER = "devcluster.sandboxkit.io/hostpath"
STORAGE_SUBDIR = "volumes"


def claim_names(pod: dict[str, Any]) -> list[str]:
    """The claims a pod's volumes name, in order."""
    return [v["persistentVolumeClaim"].get("claimName", "")
            for v in (pod.get("spec") or {}).get("volumes") or [] if "persistentVolumeClaim" in v]


def volume_name(claim: dict[str, Any]) -> str:
    """``pvc-<uid>``: the name dynamic provisioning gives a claim's volume."""
    return f"pvc-{claim['metadata']['uid']}"


def claim_dir(node_dir: Path, name: str) -> Path:
    """The host directory holding the data of volume ``name``."""
    return Path(node_dir) / STORAGE_SUBDIR / name


def claim_problem(api: Api, pod: dict[str, Any]) -> str | None:
    """VolumeBinding's PreFilter verdict on the pod's claims: None, or why it cannot run."""
    namespace = pod["metadata"].get("namespace", "")
    for name in claim_names(pod):
        claim = api.get_or_none(CLAIMS, namespace, name)
        if claim is None:
            return f'persistentvolumeclaim "{name}" not found'
        if "deletionTimestamp" in claim["metadata"]:
            return f'persistentvolumeclaim "{name}" is being deleted'
    return None


def bind_claims(api: Api, pod: dict[str, Any], node_name: str, user: Any) -> None:
    """Provision and bind the pod's Pending claims on ``node_name`` (the scheduler's PreBind)."""
    namespace = pod["metadata"].get("namespace", "")
    for name in claim_names(pod):
        claim = api.get(CLAIMS, namespace, name)
        if claim.get("status", {}).get("phase") == "Bound":
            continue
        meta, spec = claim["metadata"], claim.setdefault("spec", {})
        annotations = meta.setdefault("annotations", {})
        annotations.update({
            "volume.kubernetes.io/selected-node": node_name,
            "volume.kubernetes.io/storage-provisioner": PROVISIONER,
            "volume.beta.kubernetes.io/storage-provisioner": PROVISIONER,
            "pv.kubernetes.io/bind-completed": "yes",
            "pv.kubernetes.io/bound-by-controller": "yes",
        })
        spec["volumeName"] = volume_name(claim)
        claim = api.update(CLAIMS, claim, user=user)
        storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
        claim["status"] = {"phase": "Bound", "accessModes": list(spec.get("accessModes") or []),
                           **({"capacity": {"storage": storage}} if storage else {})}
        api.update(CLAIMS, claim, subresource="status", user=user)
        api.record_event(claim, "Normal", "ProvisioningSucceeded",
                         f"Successfully provisioned volume {spec['volumeName']}", PROVISIONER)


def pending_status() -> dict[str, Any]:
    """What the PV controller writes on a claim it has not bound yet."""
    return {"phase": "Pending", "lastPhaseTransitionTime": clock.rfc3339()}
