"""Kubeconfig files the official client can load."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import yaml
from kubernetes import config as kube_config
from kubernetes.client import Configuration

from sandboxkit.devcluster.kubeconfig import token_kubeconfig, write_kubeconfig
from sandboxkit.devcluster.pki import ensure_pki


def test_certificate_kubeconfig_embeds_data_and_loads(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki")
    path = write_kubeconfig(tmp_path / "kubeconfig", "https://127.0.0.1:6443",
                            pki.ca_cert.read_bytes(), pki.admin_cert.read_bytes(),
                            pki.admin_key.read_bytes(), namespace="work")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = yaml.safe_load(path.read_text())
    assert doc["current-context"] == "sandboxkit-devcluster"
    assert doc["contexts"][0]["context"]["namespace"] == "work"
    user = doc["users"][0]["user"]
    assert base64.b64decode(user["client-key-data"]) == pki.admin_key.read_bytes()
    assert base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]) == (
        pki.ca_cert.read_bytes())

    loaded = Configuration()
    kube_config.load_kube_config(config_file=str(path), client_configuration=loaded)
    assert loaded.host == "https://127.0.0.1:6443"
    assert Path(loaded.ssl_ca_cert).read_bytes() == pki.ca_cert.read_bytes()
    assert Path(loaded.cert_file).read_bytes() == pki.admin_cert.read_bytes()


def test_token_kubeconfig_loads_with_bearer_token(tmp_path: Path) -> None:
    path = token_kubeconfig(tmp_path / "sa.kubeconfig", "https://localhost:1234", "CA PEM",
                            "tok.en.value", "system:serviceaccount:ns1:runner",
                            context="as-runner", namespace="ns1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = yaml.safe_load(path.read_text())
    assert doc["users"] == [{"name": "system:serviceaccount:ns1:runner",
                             "user": {"token": "tok.en.value"}}]
    contexts, active = kube_config.list_kube_config_contexts(config_file=str(path))
    assert active["name"] == "as-runner"
    assert active["context"]["namespace"] == "ns1"
    assert len(contexts) == 1
