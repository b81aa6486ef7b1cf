"""Kubeconfig files for the devcluster, self-contained so they can be copied anywhere.

Credentials are embedded as ``*-data`` fields rather than file paths so that a kubeconfig
keeps working when handed to a subprocess, a notebook kernel or another working directory.
Files are written owner-readable only, since they hold a private key or a token.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from .pki import write_private_file

__all__ = [
    "DEFAULT_CONTEXT",
    "kubeconfig_dict",
    "token_kubeconfig",
    "write_kubeconfig",
]

DEFAULT_CONTEXT = "sandboxkit-devcluster"


def _b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def kubeconfig_dict(
    server_url: str,
    ca_pem: bytes | str,
    user_name: str,
    credentials: dict[str, str],
    context: str = DEFAULT_CONTEXT,
    namespace: str = "default",
) -> dict[str, Any]:
    """A one-cluster, one-user, one-context ``Config`` whose current context is ``context``."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": context,
            "cluster": {"server": server_url, "certificate-authority-data": _b64(ca_pem)},
        }],
        "users": [{"name": user_name, "user": credentials}],
        "contexts": [{
            "name": context,
            "context": {"cluster": context, "user": user_name, "namespace": namespace},
        }],
        "current-context": context,
        "preferences": {},
    }


def _write(path: Path, config: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private_file(path, yaml.safe_dump(config, sort_keys=False).encode())
    return path


def write_kubeconfig(
    path: Path,
    server_url: str,
    ca_pem: bytes | str,
    client_cert_pem: bytes | str,
    client_key_pem: bytes | str,
    context: str = DEFAULT_CONTEXT,
    namespace: str = "default",
) -> Path:
    """Write a kubeconfig authenticating with a client certificate (the cluster admin's)."""
    credentials = {
        "client-certificate-data": _b64(client_cert_pem),
        "client-key-data": _b64(client_key_pem),
    }
    return _write(path, kubeconfig_dict(server_url, ca_pem, f"{context}-admin", credentials,
                                        context, namespace))


def token_kubeconfig(
    path: Path,
    server_url: str,
    ca_pem: bytes | str,
    token: str,
    user_name: str,
    context: str = DEFAULT_CONTEXT,
    namespace: str = "default",
) -> Path:
    """Write a kubeconfig authenticating with a bearer token, e.g. a ServiceAccount's.

    Tests use it to act as the sandbox's ServiceAccount and see RBAC denials as a
    workload would.
    """
    return _write(path, kubeconfig_dict(server_url, ca_pem, user_name, {"token": token},
                                        context, namespace))
