"""A factory of Kubernetes sandboxes in a test namespace (the ``make_sandbox`` fixture).

Sandboxes are made unstarted, so a test can label its namespace or create claims first;
small requests and busybox keep them cheap on any cluster. Every sandbox made is torn
down, and waited for, when the block ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client

from sandboxkit import KubernetesSandbox, create_sandbox

SERVICE_ACCOUNT = "ci-fixer-sandbox"
IMAGE = "busybox"
STARTUP_TIMEOUT = 120.0  # a real cluster pulling busybox; the devcluster needs milliseconds
SMALL = {"cpu_request": "10m", "memory_request": "16Mi"}

MakeSandbox = Callable[..., KubernetesSandbox]


@contextmanager
def sandbox_factory(kubeconfig: Path, api_client: Any, namespace: str) -> Iterator[MakeSandbox]:
    """Create the sandbox ServiceAccount in ``namespace``; yield a factory of sandboxes."""
    client.CoreV1Api(api_client).create_namespaced_service_account(
        namespace, {"metadata": {"name": SERVICE_ACCOUNT}})
    made: list[KubernetesSandbox] = []

    def make(**overrides: Any) -> KubernetesSandbox:
        sandbox = create_sandbox(**{
            "image": IMAGE, "kubeconfig": str(kubeconfig), "namespace": namespace,
            "startup_timeout": STARTUP_TIMEOUT, **SMALL, **overrides})
        assert isinstance(sandbox, KubernetesSandbox)
        made.append(sandbox)
        return sandbox

    try:
        yield make
    finally:
        for sandbox in made:
            sandbox.teardown(wait=True)


def label_namespace(api_client: Any, namespace: str, labels: dict[str, str]) -> None:
    client.CoreV1Api(api_client).patch_namespace(namespace, {"metadata": {"labels": labels}})
