"""Typed API clients and a sandbox factory for the integration tests, built on the session's
``api_client``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from sandbox_support import MakeSandbox, sandbox_factory


@pytest.fixture
def core(api_client: Any) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def batch(api_client: Any) -> client.BatchV1Api:
    return client.BatchV1Api(api_client)


@pytest.fixture
def make_sandbox(kubeconfig: Path, api_client: Any, namespace: str) -> Iterator[MakeSandbox]:
    """Unstarted Kubernetes sandboxes in the test namespace, torn down (and waited for)
    afterwards; see sandbox_support."""
    with sandbox_factory(kubeconfig, api_client, namespace) as make:
        yield make
