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
import posixpath
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ...errors import CommandFailed
from ...models import CommandResult

__all__ = ["MISSING_EXIT", "Runner", "download", "upload"]

# sysexits.h EX_NOINPUT: the download script's "no such path", told apart from tar failing.
MISSING_EXIT = 66
_SPOOL_MEMORY = 8 << 20

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


def _remote_split(remote_path: str, source_name: str) -> tuple[str, str]:
    """(parent, name) of the remote destination or source, safe to pass to sh builtins."""
    if remote_path.endswith("/"):
        remote_path += source_name
    parent, name = posixpath.split(posixpath.normpath(remote_path))
    parent = parent or "."
    if parent.startswith("-"):
        parent = "./" + parent
    if name.startswith("-"):
        name = "./" + name
    return parent, name or "."


def _owned_by_nobody(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def upload(run: Runner, local_path: str | os.PathLike[str], remote_path: str) -> None:
    """Copy a local file or directory tree to ``remote_path`` in the sandbox."""
    source = Path(local_path)
    if not source.exists() and not source.is_symlink():
        raise FileNotFoundError(errno.ENOENT, "no such local file or directory", str(local_path))
    parent, name = _remote_split(remote_path, source.resolve().name or source.name)
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY) as archive:
        with tarfile.open(fileobj=archive, mode="w", format=tarfile.GNU_FORMAT) as tar:
            tar.add(str(source), arcname=posixpath.basename(name) if name != "." else ".",
                    recursive=True, filter=_owned_by_nobody)
        archive.seek(0)
        result = run(["/bin/sh", "-c", _UPLOAD, "sandboxkit-upload", parent], stdin=archive,
                     command_text=f"upload {local_path} -> {remote_path}")
    if result.exit_code != 0:
        raise CommandFailed(result)


def download(run: Runner, remote_path: str, local_path: str | os.PathLike[str]) -> None:
    """Copy a file or directory tree at ``remote_path`` in the sandbox to ``local_path``."""
    parent, name = _remote_split(remote_path.rstrip("/") or "/", "")
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY) as archive:
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


def _extract(archive: IO[bytes], top: str, local_path: str | os.PathLike[str]) -> None:
    """Extract members named ``top`` or ``top/...`` so that ``top`` becomes the target."""
    text = os.fspath(local_path)
    into_directory = text.endswith(("/", os.sep))
    target = Path(os.path.abspath(text))
    top_name = posixpath.basename(posixpath.normpath(top))
    if into_directory:
        target = target / (top_name if top_name not in ("", ".", "/") else "")
    destination = target.parent
    destination.mkdir(parents=True, exist_ok=True)
    uid, gid = os.getuid(), os.getgid()
    prefix = _strip_dot(top)

    def rename(info: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        member = _strip_dot(info.name)
        if member == prefix or prefix == "":
            rest = member if prefix == "" else ""
        elif member.startswith(prefix + "/"):
            rest = member[len(prefix) + 1:]
        else:
            return None  # not under what we asked for
        info = info.replace(name=posixpath.join(target.name, rest) if rest else target.name,
                            uid=uid, gid=gid, uname="", gname="", deep=False)
        if info.islnk() and info.linkname:
            link = _strip_dot(info.linkname)
            if link == prefix or link.startswith(prefix + "/"):
                info = info.replace(linkname=target.name + link[len(prefix):], deep=False)
        return tarfile.tar_filter(info, path)

    with tarfile.open(fileobj=archive, mode="r:") as tar:
        tar.extractall(str(destination), filter=rename)


def _strip_dot(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/") if name not in ("", ".") else ""
