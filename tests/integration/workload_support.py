"""Helpers for the workload, exec/logs and RBAC tests: manifests and watch-based waits.

Everything here goes through the official client, as a user of a real cluster would, and
waits by watching (list, then watch from the list's resourceVersion) -- never by sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, watch

SANDBOX_LABELS = {"app": "ci-fixer-sandbox"}
IDLE = ["tail", "-f", "/dev/null"]
# Generous enough for a kind node pulling busybox; the devcluster answers in milliseconds.
TIMEOUT = 120

Predicate = Callable[[str, Any], bool]


def container(command: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": "main", "image": "busybox", "command": command, **extra}


def pod_spec(command: list[str], **extra: Any) -> dict[str, Any]:
    """A pod spec that stops fast: no API token, a one-second grace period."""
    return {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        "automountServiceAccountToken": False,
        "containers": [container(command)],
        **extra,
    }


def job_manifest(name: str, command: list[str] | None = None, *, backoff_limit: int = 0,
                 pod: dict[str, Any] | None = None, labels: dict[str, str] | None = None,
                 **spec: Any) -> dict[str, Any]:
    """A sandbox-shaped Job: no retries, restartPolicy Never, labelled app=ci-fixer-sandbox
    unless ``labels`` says otherwise (on the Job and its pods alike)."""
    labels = SANDBOX_LABELS if labels is None else labels
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": pod_spec(command or IDLE, **(pod or {})),
            },
            **spec,
        },
    }


def pod_manifest(name: str, command: list[str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(SANDBOX_LABELS)},
        "spec": pod_spec(command or IDLE, **spec),
    }


def watch_until(list_fn: Callable[..., Any], predicate: Predicate, *args: Any,
                resource_version: str | None = None, timeout: float = TIMEOUT,
                **kwargs: Any) -> tuple[str, Any]:
    """The first ``(event type, object)`` satisfying ``predicate``.

    Without ``resource_version`` the current objects are listed first (as ``ADDED``) and the
    watch starts from the list's version, so nothing between the two is missed.
    """
    if resource_version is None:
        listing = list_fn(*args, **kwargs)
        for item in listing.items:
            if predicate("ADDED", item):
                return "ADDED", item
        resource_version = listing.metadata.resource_version
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while (remaining := deadline - time.monotonic()) > 0:
        stream = watch.Watch().stream(
            list_fn, *args, resource_version=resource_version,
            timeout_seconds=max(int(remaining), 1), **kwargs)
        for event in stream:
            obj = event["object"]
            if event["type"] == "ERROR":
                raise AssertionError(f"watch failed: {event['raw_object']}")
            resource_version = obj.metadata.resource_version
            seen.append(f"{event['type']} {obj.metadata.name}")
            if predicate(event["type"], obj):
                stream.close()
                return event["type"], obj
    raise AssertionError(f"no matching change within {timeout}s; saw {seen[-10:]}")


def wait_gone(list_fn: Callable[..., Any], namespace: str, name: str,
              timeout: float = TIMEOUT) -> None:
    """Return once the named object has left storage (already absent, or a DELETED event)."""
    selector = f"metadata.name={name}"
    listing = list_fn(namespace, field_selector=selector)
    if listing.items:
        watch_until(list_fn, lambda kind, _: kind == "DELETED", namespace,
                    resource_version=listing.metadata.resource_version,
                    field_selector=selector, timeout=timeout)


def wait_for_event(core: client.CoreV1Api, namespace: str, name: str,
                   predicate: Callable[[Any], bool], timeout: float = TIMEOUT) -> Any:
    """The first Event about object ``name`` that satisfies ``predicate``."""
    _, event = watch_until(
        core.list_namespaced_event, lambda kind, ev: kind != "DELETED" and predicate(ev),
        namespace, field_selector=f"involvedObject.name={name}", timeout=timeout)
    return event


def job_condition(job: Any, type_: str) -> Any:
    """The Job's condition of ``type_`` when its status is True, else None."""
    for cond in (job.status and job.status.conditions) or []:
        if cond.type == type_ and cond.status == "True":
            return cond
    return None


def wait_job_finished(batch: client.BatchV1Api, namespace: str, name: str,
                      timeout: float = TIMEOUT) -> Any:
    """The Job once it has a Complete or Failed condition."""
    _, job = watch_until(
        batch.list_namespaced_job,
        lambda _, j: bool(job_condition(j, "Complete") or job_condition(j, "Failed")),
        namespace, field_selector=f"metadata.name={name}", timeout=timeout)
    return job


def wait_pod_running(core: client.CoreV1Api, namespace: str, name: str,
                     timeout: float = TIMEOUT) -> Any:
    _, pod = watch_until(core.list_namespaced_pod, lambda _, p: p.status.phase == "Running",
                         namespace, field_selector=f"metadata.name={name}", timeout=timeout)
    return pod


def start_sandbox(api_client: Any, namespace: str, name: str,
                  command: list[str] | None = None) -> str:
    """Create a sandbox Job and return the name of its pod once it is Running."""
    batch = client.BatchV1Api(api_client)
    core = client.CoreV1Api(api_client)
    created = batch.create_namespaced_job(namespace, job_manifest(name, command))
    _, pod = watch_until(
        core.list_namespaced_pod, lambda _, p: p.status.phase == "Running", namespace,
        label_selector=f"batch.kubernetes.io/controller-uid={created.metadata.uid}")
    return str(pod.metadata.name)


def create_running_pod(api_client: Any, namespace: str, name: str,
                       command: list[str] | None = None) -> Any:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, pod_manifest(name, command))
    return wait_pod_running(core, namespace, name)


def token_kubeconfig(api_client: Any, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as ``account`` with a TokenRequest token."""
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": account}})
    token = core.create_namespaced_service_account_token(
        account, namespace, {"spec": {"expirationSeconds": 600}}).status.token
    configuration = api_client.configuration
    cluster: dict[str, Any] = {"server": configuration.host}
    if configuration.ssl_ca_cert:
        cluster["certificate-authority"] = configuration.ssl_ca_cert
    else:
        cluster["insecure-skip-tls-verify"] = True
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": account,
                                                 "namespace": namespace}}],
        "current-context": "ctx",
    }))
    return path
