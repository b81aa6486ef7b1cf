"""Fixtures of the unit tests: a machine on which kubectl would find no cluster, and one on
which no HTTP request can be made at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import pytest
from urllib3.connectionpool import HTTPConnectionPool


@pytest.fixture
def no_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME without ~/.kube/config, no KUBECONFIG, not in a pod; returns HOME."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(name, raising=False)
    return home


def _refuse(*_: Any, **__: Any) -> NoReturn:
    raise AssertionError("an HTTP request was made: validation must come before any")


@pytest.fixture
def offline(no_cluster: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """:func:`no_cluster`, working in the empty HOME (a relative ``--kubeconfig`` names no
    file), and every HTTP request -- the kubernetes client's and the Docker SDK's both go
    through urllib3's pools -- an AssertionError, which no test here expects."""
    monkeypatch.chdir(no_cluster)
    monkeypatch.setattr(HTTPConnectionPool, "urlopen", _refuse)
    return no_cluster
