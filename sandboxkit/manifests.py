"""SandboxConfig -> batch/v1 Job manifest. Pure functions: no client, no I/O.

The seed design fixes the shape: label ``app=ci-fixer-sandbox``, ServiceAccount
``ci-fixer-sandbox``, one container idling on ``tail -f /dev/null``, backoffLimit 0,
``ttlSecondsAfterFinished``; sandboxkit adds a per-sandbox id label, an owner annotation,
no ServiceAccount token in the pod, a bounded lifetime and a short grace period.

A warm pool's sandboxes (:mod:`sandboxkit.pool`) are these same Jobs with three more labels
on the Job only (:func:`pool_job_manifest`): the pool's name, its state (idle or claimed:
the one field a claim changes, so it must be mutable, and a Job's pod template is not) and
:func:`pool_spec`, a digest of everything in the manifest a configuration decides, so a
claim takes only a sandbox that is exactly what a cold start with its configuration makes.

Security profiles name the Pod Security Standards level the pod is built to pass, so a
namespace labelled ``pod-security.kubernetes.io/enforce=<level>`` admits it. "baseline" is
the seed's pod, which sets nothing baseline forbids. "restricted" adds what that level
requires: no privilege escalation, every capability dropped, the runtime's default seccomp
profile, and a non-root user. The uid is set explicitly (:data:`RESTRICTED_UID`) because
``runAsNonRoot`` alone makes the kubelet refuse images whose default user is root, as the
seed image's is; ``fsGroup`` makes a mounted workspace volume writable for that user.
"""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import json
import os
import re
import socket
import uuid
from typing import Any

from .config import EGRESS_LABEL, SANDBOX_APP_LABEL, SandboxConfig

__all__ = [
    "CONTAINER_NAME",
    "IDLE_COMMAND",
    "ID_LABEL",
    "OWNER_ANNOTATION",
    "POOL_CLAIMED",
    "POOL_DRAINING",
    "POOL_IDLE",
    "POOL_LABEL",
    "POOL_SPEC_LABEL",
    "POOL_STATE_LABEL",
    "RESTRICTED_UID",
    "WORKSPACE_VOLUME",
    "job_manifest",
    "new_sandbox_name",
    "owner_description",
    "owner_process",
    "pool_job_manifest",
    "pool_selector",
    "pool_spec",
    "sandbox_selector",
]

CONTAINER_NAME = "sandbox"
IDLE_COMMAND = ("tail", "-f", "/dev/null")
ID_LABEL = "sandboxkit.io/sandbox-id"
OWNER_ANNOTATION = "sandboxkit.io/owner"
WORKSPACE_VOLUME = "workspace"
POOL_LABEL = "sandboxkit.io/pool"
POOL_STATE_LABEL = "sandboxkit.io/pool-state"
POOL_SPEC_LABEL = "sandboxkit.io/pool-spec"
POOL_IDLE, POOL_CLAIMED, POOL_DRAINING = "idle", "claimed", "draining"
# A conventional first non-system uid (the seed image's "pn" user, node images' "node")
RESTRICTED_UID = 1000


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


_OWNER = re.compile(r"^[^@\s]*@(?P<host>\S+) pid=(?P<pid>\d+)(?: |$)")


def owner_process(owner: str) -> tuple[str, int] | None:
    """``(host, pid)`` of the process an :func:`owner_description` names; None for an
    annotation in another format (written by hand, or by another tool)."""
    match = _OWNER.match(owner or "")
    return (match.group("host"), int(match.group("pid"))) if match else None


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
    # With a workspace volume and no workdir, commands start in the workspace: that is where
    # the checkout that outlives the sandbox lives.
    workdir = config.workdir or (config.workspace_path if config.workspace_pvc else None)
    if workdir:
        container["workingDir"] = workdir
    pod_spec: dict[str, Any] = {
        "serviceAccountName": config.service_account,
        "automountServiceAccountToken": config.automount_service_account_token,
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": config.termination_grace_period_seconds,
        "containers": [container],
    }
    if config.workspace_pvc:
        container["volumeMounts"] = [{"name": WORKSPACE_VOLUME, "mountPath": config.workspace_path}]
        pod_spec["volumes"] = [{"name": WORKSPACE_VOLUME,
                                "persistentVolumeClaim": {"claimName": config.workspace_pvc}}]
    if config.security_profile == "restricted":
        pod_spec["securityContext"], container["securityContext"] = _restricted_contexts()
    template_labels = dict(labels)
    if config.allow_egress:
        template_labels[EGRESS_LABEL[0]] = EGRESS_LABEL[1]
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
                "metadata": {"labels": template_labels,
                             "annotations": {OWNER_ANNOTATION: owner}},
                "spec": pod_spec,
            },
        },
    }


def _restricted_contexts() -> tuple[dict[str, Any], dict[str, Any]]:
    """Pod and container securityContext passing the "restricted" Pod Security Standard."""
    pod = {
        "runAsNonRoot": True,
        "runAsUser": RESTRICTED_UID,
        "runAsGroup": RESTRICTED_UID,
        "fsGroup": RESTRICTED_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    return pod, container


def pool_spec(config: SandboxConfig) -> str:
    """A digest of the Job ``config`` makes, without what differs between two sandboxes of
    one configuration (name, owner, the pool it came from): equal digests, same sandbox.

    Digesting the manifest rather than listing fields means a setting added later that
    changes the Job changes the digest too; client-side settings (timeouts, kubeconfig)
    never reach the manifest, so they never stop a claim.
    """
    placeholder = "pool-member"
    plain = dataclasses.replace(config, name=placeholder, pool=None)
    manifest = job_manifest(plain, placeholder, owner="")
    shape = {"labels": manifest["metadata"]["labels"], "spec": manifest["spec"]}
    digest = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()
    return digest[:16]


def pool_selector(pool: str | None = None, state: str | None = None) -> str:
    """Label selector for every pool's sandboxes, one pool's, or one pool's in ``state``."""
    selector = f"{sandbox_selector()},{POOL_LABEL}" + (f"={pool}" if pool else "")
    return selector + (f",{POOL_STATE_LABEL}={state}" if state else "")


def pool_job_manifest(config: SandboxConfig, name: str, owner: str, pool: str) -> dict[str, Any]:
    """The Job of an idle sandbox of ``pool``: :func:`job_manifest`'s, pool labels added to
    the Job (not its pod template, which is immutable while a claim changes the state)."""
    manifest = job_manifest(config, name, owner)
    manifest["metadata"]["labels"].update({
        POOL_LABEL: pool, POOL_STATE_LABEL: POOL_IDLE, POOL_SPEC_LABEL: pool_spec(config)})
    return manifest
