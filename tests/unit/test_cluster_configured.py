"""ensure_cluster() with a cluster configured: it uses it, starts nothing, changes nothing.

The configured cases need no server (no API call is made); the fallback that starts a
devcluster is tested in tests/integration/test_cluster_fallback.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from sandboxkit.errors import ConfigError
from sandboxkit.fallback import ensure_cluster


def _write_kubeconfig(path: Path, context: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}],
    }))
    return path


def test_kubeconfig_variable_is_used_as_is(no_cluster: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write_kubeconfig(tmp_path / "kind.yaml", "kind-kind")
    missing = tmp_path / "missing.yaml"  # kubectl skips files that do not exist; so do we
    monkeypatch.setenv("KUBECONFIG", f"{missing}:{path}")
    with ensure_cluster() as handle:
        assert not handle.started
        assert handle.kubeconfig == path
        assert str(path) in handle.description
        assert "context kind-kind" in handle.description
    assert os.environ["KUBECONFIG"] == f"{missing}:{path}"  # untouched by close()


def test_home_kubeconfig_is_used(no_cluster: Path) -> None:
    path = _write_kubeconfig(no_cluster / ".kube" / "config", "prod")
    handle = ensure_cluster()
    assert (handle.kubeconfig, handle.started) == (path, False)
    assert "context prod" in handle.description
    handle.close()
    handle.close()  # idempotent


def test_broken_in_cluster_config_is_an_error_not_a_devcluster(
        no_cluster: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a pod without a ServiceAccount token kubectl fails; so must we, rather than
    quietly running sandboxes on a local server."""
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(ConfigError, match="in-cluster"):
        ensure_cluster()
