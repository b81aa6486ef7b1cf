"""Tar archives of local trees and their extraction, shared by the backends' file copies.

The Kubernetes backend sends these archives through ``tar`` over exec, the Docker backend
through the daemon's archive endpoints; both follow one set of path rules: the destination
is the path the source becomes, and a destination ending in ``/`` is a directory the source
is copied into under its own name. Extraction refuses absolute paths and members or links
that would land outside the destination (:func:`tarfile.tar_filter`), and makes the local
user the owner.
"""

from __future__ import annotations

import errno
import os
import posixpath
import tarfile
from pathlib import Path
from typing import IO

__all__ = ["extract", "pack", "remote_split", "upload_source"]


def remote_split(remote_path: str, source_name: str) -> tuple[str, str]:
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


def upload_source(local_path: str | os.PathLike[str],
                  remote_path: str) -> tuple[Path, str, str]:
    """``(source, parent, name)`` of an upload: the local file or tree (FileNotFoundError if
    there is none; a dangling symlink is copied as a link) and :func:`remote_split` of the
    destination, a ``/``-ended one taking the source's own name."""
    source = Path(local_path)
    if not source.exists() and not source.is_symlink():
        raise FileNotFoundError(errno.ENOENT, "no such local file or directory", str(local_path))
    parent, name = remote_split(remote_path, source.resolve().name or source.name)
    return source, parent, name


def pack(source: Path, name: str, archive: IO[bytes], owner: tuple[int, int] = (0, 0)) -> None:
    """Write ``source`` (a file or a tree, modes and symlinks kept) into ``archive`` as a tar
    whose top member is named after ``name``. Members are owned by ``owner`` (uid, gid),
    never the uploader's ids: root by default, so that an extractor that keeps its own
    identity (``tar -o``) decides; a backend whose extractor applies the archive's owners
    passes the sandbox user's."""
    uid, gid = owner

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid, info.gid = uid, gid
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=archive, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.add(str(source), arcname=posixpath.basename(name) if name != "." else ".",
                recursive=True, filter=owned)


def extract(archive: IO[bytes], top: str, local_path: str | os.PathLike[str]) -> None:
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
