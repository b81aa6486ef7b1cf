"""Stdin for an exec, with its length known before the command starts.

Shared by the container backends. The Kubernetes wrapper bounds stdin on v4 servers, which
cannot signal EOF: when stdin is given, its length N is passed to the wrapper, which feeds
the command through ``head -c N`` (when ``head`` exists), so the command sees EOF after N
bytes whatever the protocol. Stdin of unknown length (a pipe) is therefore first spooled to
a temporary file (memory up to :data:`SPOOL_MEMORY`) to learn N. Docker ends stdin with a
half-close instead, but reads it through the same source, so both backends accept bytes or a
binary file alike.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from typing import IO

__all__ = ["SPOOL_MEMORY", "STDIN_CHUNK", "StdinData", "StdinSource", "remaining_length"]

STDIN_CHUNK = 64 << 10
"""Bytes of stdin read (and sent) at a time."""

SPOOL_MEMORY = 8 << 20
"""Bytes a spooled temporary file (stdin of unknown length, a tar archive) keeps in memory
before it moves to disk."""

StdinData = bytes | bytearray | memoryview | IO[bytes]


class StdinSource:
    """Stdin with a known length, read at most ``length`` bytes in all."""

    def __init__(self, reader: Callable[[int], bytes], length: int,
                 owned: IO[bytes] | None = None) -> None:
        self._reader = reader
        self.length = length
        self._remaining = length
        self._owned = owned

    @classmethod
    def open(cls, stdin: StdinData) -> StdinSource:
        """A source for bytes, a regular or seekable file (read from its position), or a
        pipe (spooled first). Text is refused: its encoding is the caller's decision."""
        if isinstance(stdin, str):
            raise TypeError("stdin must be bytes or a binary file; encode text first")
        if isinstance(stdin, (bytes, bytearray, memoryview)):
            view = memoryview(stdin).cast("B")
            offset = 0

            def read_bytes(size: int) -> bytes:
                nonlocal offset
                chunk = bytes(view[offset:offset + size])
                offset += len(chunk)
                return chunk

            return cls(read_bytes, len(view))
        length = remaining_length(stdin)
        if length is not None:
            return cls(stdin.read, length)
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)  # noqa: SIM115
        shutil.copyfileobj(stdin, spool)
        length = spool.tell()
        spool.seek(0)
        return cls(spool.read, length, owned=spool)

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes, never more than ``length`` in all; b"" at the end."""
        if self._remaining <= 0:
            return b""
        chunk = self._reader(min(size, self._remaining))
        if isinstance(chunk, str):
            raise TypeError("stdin must be opened in binary mode")
        self._remaining -= len(chunk)
        if not chunk:
            self._remaining = 0
        return chunk

    def close(self) -> None:
        """Drop the spool, if one was made; a caller's file stays open."""
        if self._owned is not None:
            self._owned.close()


def remaining_length(stream: IO[bytes]) -> int | None:
    """Bytes left in a regular or seekable file, or None for a pipe or socket."""
    with contextlib.suppress(AttributeError, OSError, ValueError):
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
    with contextlib.suppress(AttributeError, OSError, ValueError):
        if stream.seekable():
            here = stream.tell()
            end = stream.seek(0, os.SEEK_END)
            stream.seek(here)
            return max(end - here, 0)
    return None
