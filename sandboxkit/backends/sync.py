"""Sync a local tree into a sandbox, and diff what changed there since.

Why the manifest is computed in the sandbox: what the sandbox holds is the truth (a kernel
restart, another process or the command that ran there may have changed it), so each sync
asks the sandbox for the size, mode and SHA-256 of every file under the destination (one
``find`` + ``stat`` + ``sha256sum`` command, present in GNU coreutils and busybox alike)
and sends only files that differ, as one tar upload through the backend's own
:meth:`Sandbox.upload` (so every backend gets sync with no code of its own).

Paths never become shell source: the directory goes in an environment variable and file
names through stdin, NUL-separated, to ``xargs -0``.

Excludes (``exclude=("*.pyc", "build/")``) follow a documented subset of .gitignore, with
:mod:`fnmatch`: a pattern without ``/`` matches any path component (``*.pyc``,
``__pycache__``); one with a ``/`` inside is anchored at the synced root (``docs/*.md``;
``*`` also crosses ``/``); a trailing ``/`` matches directories only; whatever lies under
an excluded directory is excluded. Negation (``!``) is not supported. Excluded files are
neither sent nor, with ``delete=True``, removed. Empty directories are not synced.

Baseline for :func:`diff` outside git: after each sync the synced files are copied, on the
sandbox side, to ``${TMPDIR:-/tmp}/sandboxkit-baseline/<absolute remote path>``; the diff
is ``diff -ruN`` of that copy against the tree (GNU diff compares symlinks as links;
busybox diff follows them). In a git checkout the diff is ``git diff
HEAD`` (staged and unstaged) plus the untracked files, listed.
"""

from __future__ import annotations

import fnmatch
import hashlib
import html
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CommandFailed, SandboxError

if TYPE_CHECKING:
    from .base import Sandbox

__all__ = ["Diff", "DiffSummary", "Entry", "SyncReport", "diff", "excluded", "local_manifest",
           "parse_manifest", "parse_summary", "sync"]

# Evaluated once the script is in the synced directory.
_BASELINE = '"${TMPDIR:-/tmp}/sandboxkit-baseline$(pwd -P)"'
# stdout: the regular files' names, each NUL-ended, then one more NUL; their `stat` lines
# ("octal-mode size"); a NUL; their sha256sum lines; a NUL; then per symlink its name and
# target, each NUL-ended. Nothing at all when the directory does not exist.
_MANIFEST = r"""
cd "$SBK_DIR" 2>/dev/null || exit 0
t=$(mktemp) || exit 1
trap 'rm -f "$t"' EXIT
find . -type f -print0 > "$t" || exit 1
cat "$t"; printf '\0'
xargs -0 -r stat -c '%a %s' < "$t" || exit 1
printf '\0'
xargs -0 -r sha256sum < "$t" || exit 1
printf '\0'
find . -type l -exec sh -c 'for l; do printf "%s\0%s\0" "$l" "$(readlink "$l")"; done' sh {} +
"""
# stdin: names to remove, NUL-separated (from the tree and its baseline).
_DELETE = 'cd "$SBK_DIR" && b=' + _BASELINE + r""" && xargs -0 -r sh -c '
b=$1; shift; for f; do rm -f -- "$f"; rm -f -- "$b/$f"; done' sh "$b" """
# stdin: names to copy to the baseline, NUL-separated; SBK_ALL=1 copies the whole tree.
_BASELINE_COPY = 'cd "$SBK_DIR" && b=' + _BASELINE + r""" || exit 1
if [ "$SBK_ALL" = 1 ]; then rm -rf "$b" && mkdir -p "$b" && exec cp -a . "$b"; fi
xargs -0 -r sh -c 'b=$1; shift; for f; do mkdir -p "$b/${f%/*}" && rm -rf "$b/$f" &&
cp -P -p "$f" "$b/$f"; done' sh "$b" """
_GIT = r"""
cd "$SBK_DIR" || exit 1
if command -v git >/dev/null 2>&1 && git rev-parse --is-inside-work-tree >/dev/null 2>&1
then
  git diff --no-color "$SBK_AGAINST" -- . || exit 1
  git ls-files --others --exclude-standard -z -- . | tr '\0' '\n' | sed 's/^/untracked: /'
  exit 0
fi
d=$(pwd -P); b=""" + _BASELINE + r"""
[ -d "$b" ] || { echo "sandboxkit: no baseline: sync or upload first" >&2; exit 3; }
t=$(mktemp -d) || exit 1
trap 'rm -rf "$t"' EXIT
ln -s "$b" "$t/a" && ln -s "$d" "$t/b" && cd "$t" || exit 1
# GNU diff compares symlinks as links with --no-dereference; busybox has no such option.
nd=--no-dereference
diff $nd /dev/null /dev/null 2>/dev/null || nd=
diff $nd -ruN a/ b/
[ $? -gt 1 ] && exit 1
exit 0
"""
_FULL_COPY_ABOVE = 64
"""More changed files than this: the baseline is refreshed as one ``cp -a`` of the tree,
cheaper than a copy per file."""


@dataclass(frozen=True)
class Entry:
    """One file of a manifest: ``kind`` "f" (regular) or "l" (symlink); ``digest`` is the
    SHA-256 of a file or the target of a link; ``mode`` the permission bits of a file."""

    kind: str
    size: int
    mode: int
    digest: str


@dataclass(frozen=True)
class SyncReport:
    """What :func:`sync` did: file counts by outcome and the bytes of the archive sent."""

    added: int = 0
    changed: int = 0
    deleted: int = 0
    unchanged: int = 0
    bytes_sent: int = 0
    sent: tuple[str, ...] = ()

    def __str__(self) -> str:
        return (f"{self.added} added, {self.changed} changed, {self.deleted} deleted, "
                f"{self.unchanged} unchanged; {self.bytes_sent} bytes sent")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython shows the one line :meth:`__str__` gives, as the cell's result."""
        printer.text(str(self))


def parse_manifest(data: bytes) -> dict[str, Entry]:
    """The sandbox's manifest (the output of the manifest script) as relative path ->
    Entry. Output that does not line up (a file name with a newline in a sha256sum that
    does not escape it) raises ValueError: the caller then sends everything."""
    if not data:
        return {}
    names_part, sep, rest = data.partition(b"\0\0")
    if not sep:
        raise ValueError("manifest: no end of the file list")
    if names_part == b"":  # no files: the stat and hash sections are empty
        names: list[bytes] = []
        stats, hashes, links = b"", b"", rest[1:]
    else:
        names = names_part.split(b"\0")
        stats, sep1, rest = rest.partition(b"\0")
        hashes, sep2, links = rest.partition(b"\0")
        if not (sep1 and sep2):
            raise ValueError("manifest: sections missing")
    stat_lines = stats.decode().splitlines()
    hash_lines = [line.lstrip("\\")[:64] for line in hashes.decode(errors="replace").splitlines()]
    if not (len(names) == len(stat_lines) == len(hash_lines)):
        raise ValueError("manifest: sections of different lengths")
    manifest: dict[str, Entry] = {}
    for name, stat_line, digest in zip(names, stat_lines, hash_lines, strict=True):
        mode, size = stat_line.split()
        manifest[_relative(name)] = Entry("f", int(size), int(mode, 8), digest)
    parts = links.split(b"\0")
    for name, target in zip(parts[0:-1:2], parts[1::2], strict=False):
        manifest[_relative(name)] = Entry("l", len(target), 0, os.fsdecode(target))
    return manifest


def _relative(name: bytes) -> str:
    text = os.fsdecode(name)
    return text[2:] if text.startswith("./") else text


def excluded(path: str, patterns: Sequence[str], is_dir: bool = False) -> bool:
    """Whether ``path`` (relative, ``/``-separated) is excluded by ``patterns`` (the
    .gitignore subset of the module docstring), itself or through a parent directory."""
    parts = path.split("/")
    for index in range(len(parts)):
        prefix = "/".join(parts[: index + 1])
        directory = is_dir or index < len(parts) - 1
        for pattern in patterns:
            if _matches(prefix, parts[index], pattern, directory):
                return True
    return False


def _matches(prefix: str, name: str, pattern: str, is_dir: bool) -> bool:
    if pattern.endswith("/"):
        if not is_dir:
            return False
        pattern = pattern.rstrip("/")
    if "/" in pattern:
        return fnmatch.fnmatchcase(prefix, pattern.lstrip("/"))
    return fnmatch.fnmatchcase(name, pattern)


def local_manifest(root: Path, patterns: Sequence[str] = ()) -> dict[str, Entry]:
    """The manifest of the local tree, in the sandbox's terms, excludes applied."""
    manifest: dict[str, Entry] = {}
    for directory, dirs, files in os.walk(root):
        base = Path(directory).relative_to(root).as_posix()
        base = "" if base == "." else base + "/"
        dirs[:] = [d for d in dirs if not _is_dir_excluded(base + d, root / base / d, patterns)]
        for name in [*files, *(d for d in dirs if (root / base / d).is_symlink())]:
            rel = base + name
            if excluded(rel, patterns):
                continue
            path = root / rel
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                target = os.readlink(path)
                manifest[rel] = Entry("l", len(os.fsencode(target)), 0, target)
            elif stat.S_ISREG(info.st_mode):
                manifest[rel] = Entry("f", info.st_size, stat.S_IMODE(info.st_mode),
                                      _sha256(path))
        dirs[:] = [d for d in dirs if not (root / base / d).is_symlink()]
    return manifest


def _is_dir_excluded(rel: str, path: Path, patterns: Sequence[str]) -> bool:
    return not path.is_symlink() and excluded(rel, patterns, is_dir=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remote_manifest(sandbox: Sandbox, remote_dir: str) -> dict[str, Entry] | None:
    """The sandbox's manifest of ``remote_dir``, or None when it cannot be read reliably
    (then everything is sent)."""
    result = sandbox.run_command(_MANIFEST, env={"SBK_DIR": remote_dir})
    if result.exit_code != 0 or result.truncated:
        return None
    try:
        return parse_manifest(result.stdout_bytes)
    except (ValueError, UnicodeDecodeError):
        return None


def sync(sandbox: Sandbox, local_dir: str | os.PathLike[str], remote_dir: str, *,
         delete: bool = False, exclude: Iterable[str] = ()) -> SyncReport:
    """Make ``remote_dir`` in the sandbox hold what ``local_dir`` holds, sending only the
    files whose size, mode, content or link target differ (see the module docstring)."""
    root = Path(local_dir)
    if not root.is_dir():
        raise FileNotFoundError(2, "no such local directory", str(local_dir))
    patterns = tuple(exclude)
    env = {"SBK_DIR": remote_dir}
    wanted = local_manifest(root, patterns)
    have = remote_manifest(sandbox, remote_dir)
    remote = have or {}
    send = sorted(rel for rel, entry in wanted.items()
                  if have is None or remote.get(rel) != entry)
    gone = sorted(rel for rel in remote if rel not in wanted
                  and not excluded(rel, patterns)) if delete else []
    added = sum(1 for rel in send if rel not in remote)
    bytes_sent = 0
    if send:
        with tempfile.TemporaryDirectory(prefix="sandboxkit-sync-") as staging:
            stage = Path(staging, "tree")
            _stage(root, stage, send)
            bytes_sent = sum(wanted[rel].size for rel in send if wanted[rel].kind == "f")
            sandbox.upload(stage, remote_dir.rstrip("/") or "/")
    if gone:
        _run(sandbox, _DELETE, env, _names(gone))
    full = have is None or len(send) > _FULL_COPY_ABOVE or not remote
    if send or full:
        _run(sandbox, _BASELINE_COPY, {**env, "SBK_ALL": "1" if full else "0"},
             _names(send))
    return SyncReport(added=added, changed=len(send) - added, deleted=len(gone),
                      unchanged=len(wanted) - len(send), bytes_sent=bytes_sent,
                      sent=tuple(send))


def _names(paths: Sequence[str]) -> bytes:
    """Relative paths as ``xargs -0`` input, each ``./``-prefixed so none reads as an
    option and each has a ``/`` (the baseline script takes its parent with ``${f%/*}``)."""
    return b"".join(b"./" + os.fsencode(rel) + b"\0" for rel in paths)


def _run(sandbox: Sandbox, script: str, env: dict[str, str], stdin: bytes) -> None:
    result = sandbox.run_command(script, env=env, stdin=stdin)
    if result.exit_code != 0:
        raise CommandFailed(result)


def _stage(root: Path, stage: Path, names: Sequence[str]) -> None:
    """A tree of just ``names`` (hard links where possible), directories with their local
    modes, so one upload of it merges exactly those files into the remote tree."""
    stage.mkdir()
    shutil.copymode(root, stage)
    for rel in names:
        source, target = root / rel, stage / rel
        for parent in reversed(Path(rel).parents[:-1]):
            made = stage / parent
            if not made.exists():
                made.mkdir()
                shutil.copymode(root / parent, made)
        if source.is_symlink():
            os.symlink(os.readlink(source), target)
            continue
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)


@dataclass(frozen=True)
class DiffSummary:
    """Files touched and lines added and removed in a unified diff."""

    files: int = 0
    added: int = 0
    removed: int = 0

    def __str__(self) -> str:
        return f"{self.files} files changed, +{self.added} -{self.removed}"


def parse_summary(text: str) -> tuple[DiffSummary, tuple[str, ...]]:
    """The summary of a unified diff, and the untracked files listed after it."""
    files = added = removed = 0
    untracked: list[str] = []
    in_header = False  # after a "diff " line (git, GNU diff), before its hunks
    for line in text.splitlines():
        if line.startswith("untracked: "):
            untracked.append(line[len("untracked: "):])
        elif line.startswith("diff "):
            files += 1
            in_header = True
        elif line.startswith("Binary files ") and not in_header:
            files += 1  # diff(1) says only this of a changed binary file
        elif line.startswith("+++ "):
            files += 0 if in_header else 1  # busybox diff prints no "diff " line
            in_header = False
        elif line.startswith("+") and not line.startswith("+++ "):
            added += 1
        elif line.startswith("-") and not line.startswith("--- "):
            removed += 1
    return DiffSummary(files + len(untracked), added, removed), tuple(untracked)


@dataclass(frozen=True)
class Diff:
    """A diff of a sandbox's tree: ``text`` as git or diff(1) printed it, with a summary,
    shown as coloured HTML in a notebook and as plain text elsewhere."""

    text: str
    path: str = ""
    summary: DiffSummary = field(default_factory=DiffSummary)
    untracked: tuple[str, ...] = ()

    @classmethod
    def from_text(cls, text: str, path: str = "") -> Diff:
        summary, untracked = parse_summary(text)
        return cls(text, path, summary, untracked)

    def __str__(self) -> str:
        return self.text + ("" if self.text.endswith("\n") or not self.text else "\n") + (
            str(self.summary))

    def _repr_html_(self) -> str:
        styles = {"+": "color:#1a7f37;background:#e6ffec", "-":
                  "color:#cf222e;background:#ffebe9", "@": "color:#8250df",
                  "d": "font-weight:bold", "u": "color:#9a6700"}
        rows = []
        for line in self.text.splitlines():
            header = line.startswith(("diff ", "+++ ", "--- ", "index ", "Binary files "))
            key = "d" if header else "u" if line.startswith("untracked: ") else line[:1]
            style = styles.get(key, "")
            rows.append(f'<span style="{style}">{html.escape(line)}</span>' if style
                        else html.escape(line))
        body = "\n".join(rows)
        return (f'<div class="sandboxkit-diff"><div><b>{html.escape(self.path)}</b> '
                f"{html.escape(str(self.summary))}</div>"
                f'<pre style="margin:0">{body}</pre></div>')


def diff(sandbox: Sandbox, path: str = "/workspace", against: str = "HEAD") -> Diff:
    """The working tree's changes at ``path``: ``git diff AGAINST`` and the untracked files
    in a git checkout, else the changes since the last :func:`sync` (its baseline)."""
    result = sandbox.run_command(_GIT, env={"SBK_DIR": path, "SBK_AGAINST": against})
    if result.exit_code == 3:
        raise SandboxError(f"no baseline for {path} in {sandbox.name}: it is not a git "
                           "checkout and was never synced")
    if result.exit_code != 0:
        raise CommandFailed(result)
    return Diff.from_text(result.stdout, path)
