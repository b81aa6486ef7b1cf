"""Sandboxes in the states ``ls`` and ``gc`` must tell apart, made for real on the cluster.

Running sandboxes come from the ``make_sandbox`` fixture (sandbox_support); sandboxes whose
owner or deadline is the point are Jobs built by :func:`sandboxkit.manifests.job_manifest`
(the same manifest ``init()`` sends) with the owner annotation and deadline a test needs.
"""

from __future__ import annotations

import getpass
import socket
import subprocess
from typing import Any

from kubernetes import client
from sandbox_support import IMAGE, SMALL
from workload_support import job_condition, wait_job_finished

from sandboxkit import SandboxConfig
from sandboxkit.manifests import job_manifest, new_sandbox_name


def create_sandbox_job(api_client: Any, namespace: str, owner: str, **overrides: Any) -> str:
    """Create a sandbox Job owned by ``owner`` (the annotation text) and return its name;
    its pod needs the sandbox ServiceAccount (the ``make_sandbox`` fixture creates it)."""
    name = new_sandbox_name()
    config = SandboxConfig.resolve(image=IMAGE, namespace=namespace, name=name,
                                   **{**SMALL, **overrides})
    client.BatchV1Api(api_client).create_namespaced_job(
        namespace, job_manifest(config, name, owner))
    return name


def deadline_exceeded_sandbox(api_client: Any, namespace: str, owner: str) -> str:
    """A sandbox whose Job the Job controller failed with DeadlineExceeded (after 1 s)."""
    name = create_sandbox_job(api_client, namespace, owner, active_deadline_seconds=1)
    job = wait_job_finished(client.BatchV1Api(api_client), namespace, name)
    assert job_condition(job, "Failed").reason == "DeadlineExceeded"
    return name


def exited_pid() -> int:
    """The pid of a process of ours that has exited (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def owner(pid: int, host: str | None = None) -> str:
    """An owner annotation in the format sandboxkit writes: ``user@host pid=N``."""
    return f"{getpass.getuser()}@{host or socket.gethostname()} pid={pid}"


def job_state(api_client: Any, namespace: str, name: str) -> str:
    """"gone", "deleting" or "present": what became of a Job."""
    try:
        job = client.BatchV1Api(api_client).read_namespaced_job(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return "gone"
        raise
    return "deleting" if job.metadata.deletion_timestamp else "present"


def delete_sandbox_job(api_client: Any, namespace: str, name: str) -> None:
    """Delete a Job a test created directly (Foreground, as teardown does)."""
    try:
        client.BatchV1Api(api_client).delete_namespaced_job(
            name, namespace, propagation_policy="Foreground")
    except client.ApiException as exc:
        if exc.status != 404:
            raise
