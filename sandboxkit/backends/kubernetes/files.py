"""Copy files and directory trees in and out of a sandbox with tar over exec.

Why tar: it is in every image that has a shell (GNU, busybox, toybox), carries directories,
modes, symlinks and binary content in one stream, and needs nothing installed in the pod.
The archive goes over the exec channel's stdin (upload) or stdout (download) as raw bytes,
spooled through a temporary file, so a large tree is never held in memory whole.

Path rules, the same both ways: the destination is the path the source becomes; a
destination ending in ``/`` is a directory the source is copied into under its own name.
A directory copied onto an existing directory merges into it, as ``tar -x`` does.

Modes are exact: the local side writes them into the archive and the remote side extracts
with ``umask 0`` and ``-o`` (keep the extracting user as owner, never the uploader's uid).
Downloads are extracted with :func:`tarfile.tar_filter`, which refuses absolute paths and
members or links that would land outside the destination, and owned by the local user.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable

from ...errors import CommandFailed
from ...models import CommandResult
from ..archive import extract as _extract
from ..archive import pack, upload_source
from ..archive import remote_split as _remote_split
from ..stdin import SPOOL_MEMORY

__all__ = ["MISSING_EXIT", "Runner", "download", "upload"]

# sysexits.h EX_NOINPUT: the download script's "no such path", told apart from tar failing.
MISSING_EXIT = 66

# $1 the destination's parent directory. Modes come from the archive (umask 0); the owner is
# whoever extracts (-o), not the uploader's uid.
_UPLOAD = 'mkdir -p "$1" && umask 0 && exec tar -x -o -f - -C "$1"'
# $1 the source's parent, $2 its name.
_DOWNLOAD = (
    'if cd "$1" 2>/dev/null && { [ -e "$2" ] || [ -h "$2" ]; }; then exec tar -c -f - "$2"; '
    "fi; printf 'sandboxkit: no such file or directory\\n' >&2; exit " + str(MISSING_EXIT)
)

Runner = Callable[..., CommandResult]
"""``runner(argv, *, stdin=None, stdout_sink=None, output_limit=None, command_text=...)``:
runs argv in the sandbox (the sandbox's exec with its timeout) and returns the result."""


def upload(run: Runner, local_path: str | os.PathLike[str], remote_path: str) -> None:
    """Copy a local file or directory tree to ``remote_path`` in the sandbox."""
    source, parent, name = upload_source(local_path, remote_path)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY) as archive:
        pack(source, name, archive)
        archive.seek(0)
        result = run(["/bin/sh", "-c", _UPLOAD, "sandboxkit-upload", parent], stdin=archive,
                     command_text=f"upload {local_path} -> {remote_path}")
    if result.exit_code != 0:
        raise CommandFailed(result)


def download(run: Runner, remote_path: str, local_path: str | os.PathLike[str]) -> None:
    """Copy a file or directory tree at ``remote_path`` in the sandbox to ``local_path``."""
    parent, name = _remote_split(remote_path.rstrip("/") or "/", "")
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY) as archive:
        result = run(["/bin/sh", "-c", _DOWNLOAD, "sandboxkit-download", parent, name],
                     stdout_sink=archive, output_limit=0,
                     command_text=f"download {remote_path} -> {local_path}")
        if result.exit_code == MISSING_EXIT:
            raise FileNotFoundError(errno.ENOENT, "no such file or directory in the sandbox",
                                    remote_path)
        if result.exit_code != 0 and not _only_changed_while_read(result):
            raise CommandFailed(result)
        archive.seek(0)
        _extract(archive, name, local_path)


def _only_changed_while_read(result: CommandResult) -> bool:
    """GNU tar exits 1 for a file that grew while archived (a log being written): the copy
    is still good."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return result.exit_code == 1 and bool(lines) and all(
        "file changed as we read it" in line for line in lines)
