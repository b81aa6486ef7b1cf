"""The Docker SDK, and a client for the daemon ``DOCKER_HOST`` names.

The SDK is an optional extra (``pip install 'sandboxkit[docker]'``): every module of this
package imports it from here, so a missing SDK is one clear :class:`BackendUnavailable`
naming the extra, raised on ``import sandboxkit.backends.docker`` (and so on choosing
``execution_backend='docker'``), instead of a bare ImportError from deep inside.
"""

from __future__ import annotations

import os

from ...errors import BackendUnavailable

try:
    import docker
    from docker import errors as docker_errors
except ImportError as _missing:
    raise BackendUnavailable(
        "execution_backend='docker' needs the Docker SDK for Python, which is not installed: "
        "pip install 'sandboxkit[docker]'") from _missing

__all__ = ["docker", "docker_client", "docker_errors"]


def docker_client() -> docker.DockerClient:
    """A client for the daemon ``DOCKER_HOST`` names (default: the local socket); raises
    :class:`BackendUnavailable` naming where it looked when no daemon answers."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(max_pool_size=32)  # asks the daemon for its API version
    except docker_errors.DockerException as exc:
        raise BackendUnavailable(
            f"cannot reach a Docker daemon at {host} (DOCKER_HOST): {exc}. Start Docker "
            "(or dockerd), or set DOCKER_HOST to its socket, e.g. "
            "unix:///var/run/docker.sock; use execution_backend='kubernetes' or 'local' "
            "without Docker") from exc
    return client
