"""Typed API clients for the integration tests, built on the session's ``api_client``."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client


@pytest.fixture
def core(api_client: Any) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def batch(api_client: Any) -> client.BatchV1Api:
    return client.BatchV1Api(api_client)
