"""Files in and out of a container as tar archives, through the daemon's archive endpoints.

No ``tar`` is needed in the image: the daemon packs and unpacks, and :mod:`..archive` applies
the same rules (modes, symlinks, merging into directories, refusing escapes) as the other
backends.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

from ...errors import CommandFailed
from ...models import CommandResult
from ..archive import extract, pack, remote_split, upload_source
from ..stdin import SPOOL_MEMORY
from .client import docker_errors

__all__ = ["download", "upload"]


def upload(api: Any, container: str, user: str, run: Callable[..., CommandResult],
           local_path: str | os.PathLike[str], remote_path: str) -> None:
    """Copy a local file or tree to ``remote_path`` in the container, owned by ``user``
    (the container's ``uid:gid`` or name; "" for the image's root). ``run`` is the
    sandbox's ``exec_argv``, for making a missing parent directory."""
    source, parent, name = upload_source(local_path, remote_path)
    # The files must belong to the container's user, as `tar -x -o` makes them in the
    # Kubernetes backend. Numeric ids go into the archive; a user name needs the daemon
    # to read the image's /etc/passwd (copyUIDGID, which the SDK's put_archive lacks).
    ids = user.split(":")
    numeric = all(part.isdigit() for part in ids) and ids != [""]
    owner = (int(ids[0]), int(ids[-1]) if len(ids) > 1 else 0) if numeric else (0, 0)
    by_name = not numeric and ids != [""]
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY) as archive:
        pack(source, name, archive, owner)
        archive.seek(0)
        data = archive.read()
    if not _put_archive(api, container, parent, data, by_name):
        # The daemon extracts only into an existing directory, as `tar -C` does.
        made = run(["mkdir", "-p", "--", parent], timeout=60, command_text=f"mkdir -p {parent}")
        if made.exit_code != 0:
            raise CommandFailed(made)
        if not _put_archive(api, container, parent, data, by_name):
            raise FileNotFoundError(2, "no such directory in the sandbox", parent)


def _put_archive(api: Any, container: str, parent: str, data: bytes, by_name: bool) -> bool:
    """Extract ``data`` into ``parent``; False if ``parent`` does not exist."""
    url = f"{api.base_url}/v{api.api_version}/containers/{container}/archive"
    params = {"path": parent, **({"copyUIDGID": "1"} if by_name else {})}
    response = api.put(url, params=params, data=data)
    if response.status_code == 404:
        return False
    try:
        response.raise_for_status()
    except Exception as exc:
        raise docker_errors.APIError(exc, response=response) from exc
    return True


def download(api: Any, container: str, remote_path: str,
             local_path: str | os.PathLike[str]) -> None:
    """Copy a file or tree out of the container; the mirror of :func:`upload`."""
    parent, name = remote_split(remote_path.rstrip("/") or "/", "")
    source = f"{parent.rstrip('/')}/{name}" if name != "." else parent
    try:
        chunks, _ = api.get_archive(container, source)
    except docker_errors.NotFound as exc:
        raise FileNotFoundError(2, "no such file or directory in the sandbox",
                                remote_path) from exc
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY) as archive:
        for chunk in chunks:
            archive.write(chunk)
        archive.seek(0)
        extract(archive, name, local_path)
