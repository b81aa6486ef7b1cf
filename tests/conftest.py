"""Fixtures shared by every suite.

Integration tests run against the cluster ``SANDBOXKIT_TEST_KUBECONFIG`` names (kind in the
GitHub workflow) or, without it, against a devcluster started for the session. Objects they
create live in namespaces labelled ``sandboxkit-test``; the session fails if any is left.
"""

from __future__ import annotations

import contextlib
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
    _fail_on_leaked_sandboxes(api)
    api.close()


def _fail_on_leaked_namespaces(core: object) -> None:
    leaked = [
        ns.metadata.name
        for ns in core.list_namespace(label_selector=TEST_LABEL).items  # type: ignore[attr-defined]
        if ns.status.phase != "Terminating"
    ]
    assert not leaked, f"test namespaces left behind: {leaked}"


# Sandboxes sandboxkit made (app=ci-fixer-sandbox plus its id label) that a test left
# running; namespace deletion would hide them, so each test namespace is checked first.
SANDBOX_SELECTOR = "app=ci-fixer-sandbox,sandboxkit.io/sandbox-id"
_leaked_sandboxes: list[str] = []


def _live_sandboxes(api: object, namespace: str | None = None) -> list[str]:
    """Sandbox Jobs not already being deleted (in Terminating namespaces, if any, excepted)."""
    from kubernetes import client

    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    jobs = (batch.list_namespaced_job(namespace, label_selector=SANDBOX_SELECTOR) if namespace
            else batch.list_job_for_all_namespaces(label_selector=SANDBOX_SELECTOR)).items
    terminating = {ns.metadata.name for ns in core.list_namespace().items
                   if ns.status.phase == "Terminating"}
    return [f"{job.metadata.namespace}/{job.metadata.name}" for job in jobs
            if job.metadata.deletion_timestamp is None
            and job.metadata.namespace not in terminating]


def _fail_on_leaked_sandboxes(api: object) -> None:
    leaked = _leaked_sandboxes + _live_sandboxes(api)
    assert not leaked, f"sandbox Jobs left behind (app=ci-fixer-sandbox): {leaked}"


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
    _leaked_sandboxes.extend(_live_sandboxes(api_client, name))
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="session")
def docker_host() -> Iterator[str]:
    """A Docker engine for the tests marked ``docker`` (see tests/docker_support.py), set as
    DOCKER_HOST for the session, with the test image imported. Skips with the reason when no
    engine can be used or started; fails the session if a sandbox container is left."""
    from docker_support import EngineUnavailable, build_image, docker_engine

    with contextlib.ExitStack() as stack:
        try:
            host = stack.enter_context(docker_engine())
            build_image(host)
        except EngineUnavailable as exc:
            pytest.skip(f"no Docker engine: {exc}")
        previous = os.environ.get("DOCKER_HOST")
        os.environ["DOCKER_HOST"] = host
        try:
            yield host
            import docker

            leaked = [c.name for c in docker.from_env().containers.list(
                all=True, filters={"label": SANDBOX_SELECTOR.split(",")[0]})]
            assert not leaked, f"sandbox containers left behind: {leaked}"
        finally:
            if previous is None:
                os.environ.pop("DOCKER_HOST", None)
            else:
                os.environ["DOCKER_HOST"] = previous


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
