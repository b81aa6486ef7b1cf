"""Fixtures shared by every suite.

Integration tests run against the cluster ``SANDBOXKIT_TEST_KUBECONFIG`` names (kind in the
GitHub workflow) or, without it, against a devcluster started for the session. Objects they
create live in namespaces labelled ``sandboxkit-test``; the session fails if any is left.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TEST_LABEL = "sandboxkit-test"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by folder so ``-m unit`` and ``-m integration`` select what they say."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        elif "unit" in parts:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def kubeconfig() -> Iterator[Path]:
    external = os.environ.get("SANDBOXKIT_TEST_KUBECONFIG")
    if external:
        yield Path(external)
        return
    from sandboxkit.devcluster import DevCluster

    with DevCluster() as cluster:
        yield cluster.kubeconfig_path


@pytest.fixture(scope="session")
def api_client(kubeconfig: Path) -> Iterator[object]:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kubeconfig))
    yield api
    _fail_on_leaked_namespaces(client.CoreV1Api(api))
    api.close()


def _fail_on_leaked_namespaces(core: object) -> None:
    leaked = [
        ns.metadata.name
        for ns in core.list_namespace(label_selector=TEST_LABEL).items  # type: ignore[attr-defined]
        if ns.status.phase != "Terminating"
    ]
    assert not leaked, f"test namespaces left behind: {leaked}"


@pytest.fixture
def namespace(api_client: object) -> Iterator[str]:
    """A fresh namespace for one test, deleted (with everything in it) afterwards."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    name = f"skt-{uuid.uuid4().hex[:8]}"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={TEST_LABEL: "true"}))
    )
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def kubectl(kubeconfig: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run kubectl against the test cluster; returns the completed process, never raises."""

    def run(*args: str, input: str | None = None, timeout: float = 60) -> (
        subprocess.CompletedProcess[str]
    ):
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), *args],
            input=input, capture_output=True, text=True, timeout=timeout, check=False,
        )

    return run
