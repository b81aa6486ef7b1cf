"""Helpers for the API fidelity tests (``test_api_*.py``).

They talk to the cluster the way any client of a real API server does -- the official
client, kubectl, or plain HTTPS with the kubeconfig's credentials when a test must send
bytes no typed client would (malformed JSON, oversized bodies) -- and they wait by
watching, never by sleeping, so the same tests run against kind and the devcluster.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from workload_support import job_manifest, watch_until


def unique(prefix: str) -> str:
    """A DNS-1123 name no other test (or earlier run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def ok(result: Any) -> str:
    """stdout of a kubectl run that must have succeeded."""
    assert result.returncode == 0, f"kubectl failed ({result.returncode}): {result.stderr}"
    return str(result.stdout)


def status_of(exc: ApiException) -> dict[str, Any]:
    """The ``metav1.Status`` body of a failed call, checked for the fields every one has."""
    body = json.loads(exc.body)
    assert body["kind"] == "Status", body
    assert body["apiVersion"] == "v1", body
    assert body["status"] == "Failure", body
    assert body["code"] == exc.status, body
    return dict(body)


@dataclass
class RunningJob:
    name: str
    uid: str
    pod: Any


def start_job(api_client: Any, namespace: str, prefix: str = "job") -> RunningJob:
    """Create an idling Job and return it with its pod once the pod exists."""
    batch = client.BatchV1Api(api_client)
    core = client.CoreV1Api(api_client)
    name = unique(prefix)
    job = batch.create_namespaced_job(namespace, job_manifest(name, labels={"fidelity": name}))
    _, pod = watch_until(core.list_namespaced_pod, lambda kind, _: kind != "DELETED", namespace,
                       label_selector=f"batch.kubernetes.io/controller-uid={job.metadata.uid}")
    return RunningJob(name, job.metadata.uid, pod)


@contextmanager
def held_by_finalizer(core: client.CoreV1Api, namespace: str, pod: str,
                      finalizer: str = "fidelity.sandboxkit.dev/hold") -> Iterator[None]:
    """Keep ``pod`` in storage until the block ends, whatever deletes it meanwhile."""
    core.patch_namespaced_pod(pod, namespace, {"metadata": {"finalizers": [finalizer]}})
    try:
        yield
    finally:
        _drop_finalizer(core, namespace, pod, finalizer)


def _drop_finalizer(core: client.CoreV1Api, namespace: str, pod: str, finalizer: str) -> None:
    """Remove one finalizer by index, guarded by a JSON-patch test so that a concurrent
    change to the list (a controller dropping its own) makes the patch fail, not misfire."""
    for _ in range(10):
        try:
            current = core.read_namespaced_pod(pod, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        finalizers = current.metadata.finalizers or []
        if finalizer not in finalizers:
            return
        path = f"/metadata/finalizers/{finalizers.index(finalizer)}"
        try:
            core.patch_namespaced_pod(pod, namespace, [
                {"op": "test", "path": path, "value": finalizer},
                {"op": "remove", "path": path},
            ])
            return
        except ApiException as exc:
            if exc.status not in (409, 422):
                raise
    raise AssertionError(f"could not remove finalizer {finalizer} from pod {pod}")


def raw_request(api_client: Any, method: str, path: str, body: bytes | None = None,
                content_type: str = "application/json") -> tuple[int, dict[str, Any], Any]:
    """Send ``body`` verbatim with the client's credentials: (status, headers, parsed body).

    The typed client serializes whatever it is given, so bytes a real client could send by
    mistake -- malformed JSON, a body over the size limit -- need this.
    """
    config = api_client.configuration
    headers = {"Accept": "application/json", "Content-Type": content_type,
               "User-Agent": "sandboxkit-fidelity-tests"}
    token = config.get_api_key_with_prefix("authorization")
    if token:
        headers["Authorization"] = token
    response = api_client.rest_client.pool_manager.request(
        method, config.host + path, body=body, headers=headers, timeout=60, retries=False)
    data = response.data
    try:
        parsed: Any = json.loads(data)
    except ValueError:
        parsed = data.decode(errors="replace")
    return response.status, dict(response.headers), parsed
