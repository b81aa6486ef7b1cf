"""Reading CRI container logs for the ``pods/log`` subresource, as the kubelet does.

The runtime writes one record per line, ``<RFC3339Nano> <stream> <F|P> <text>``; the
kubelet turns records back into the container's output: a full (``F``) record gets its
newline back, a partial (``P``) one does not. Options follow ``PodLogOptions``:
``sinceSeconds``/``sinceTime`` drop older records, ``tailLines`` keeps the last N records,
``timestamps`` prefixes each with the record's time in a fixed nine-digit form,
``limitBytes`` cuts the output (mid-line if it must) and ``follow`` keeps reading as the
file grows until the container is no longer running.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = ["LogOptions", "LogRecord", "format_record", "parse_record", "read_logs"]

FOLLOW_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class LogOptions:
    """The subset of ``PodLogOptions`` the kubelet applies to a log file."""

    follow: bool = False
    tail_lines: int | None = None
    timestamps: bool = False
    since_seconds: int | None = None
    since_time: datetime | None = None
    limit_bytes: int | None = None

    def since(self, now: datetime | None = None) -> datetime | None:
        """The earliest record time shown; sinceTime and sinceSeconds are exclusive."""
        if self.since_time is not None:
            return self.since_time
        if self.since_seconds is not None:
            return (now or datetime.now(UTC)) - timedelta(seconds=self.since_seconds)
        return None


@dataclass(frozen=True)
class LogRecord:
    when: datetime
    nanos: int  # sub-second nanoseconds (datetime only keeps microseconds)
    stream: str
    partial: bool
    text: bytes


def parse_record(line: bytes) -> LogRecord | None:
    """One CRI log line (without its newline); None when it is not a valid record."""
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr"):
        return None
    if len(parts) == 3:
        # an empty full line is written as "<ts> <stream> F " and may lose its last space
        parts.append(b"")
    stamp = parts[0].decode(errors="replace")
    try:
        base, _, frac = stamp.rstrip("Z").partition(".")
        when = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    nanos = int((frac + "000000000")[:9]) if frac.isdigit() else 0
    when = when.replace(microsecond=nanos // 1000)
    return LogRecord(when, nanos, parts[1].decode(), parts[2] == b"P", parts[3])


def format_record(record: LogRecord, timestamps: bool) -> bytes:
    """The bytes ``kubectl logs`` receives for one record."""
    out = record.text if record.partial else record.text + b"\n"
    if timestamps:
        stamp = record.when.strftime("%Y-%m-%dT%H:%M:%S") + f".{record.nanos:09d}Z "
        out = stamp.encode() + out
    return out


def _tail(lines: list[bytes], count: int) -> list[bytes]:
    return lines[-count:] if count > 0 else []


async def read_logs(
    path: Path,
    options: LogOptions,
    running: Callable[[], bool] | None = None,
) -> AsyncIterator[bytes]:
    """Yield the log's output as the kubelet streams it.

    With ``options.follow``, keeps yielding new records until ``running()`` is false and
    the file has been drained; without ``running``, follow behaves like a plain read.
    """
    since = options.since()
    remaining = options.limit_bytes
    with path.open("rb") as log:
        lines = log.read().split(b"\n")
        pending = lines.pop()  # an unterminated record is still being written
        if options.tail_lines is not None:
            lines = _tail(lines, options.tail_lines)
        while True:
            for line in lines:
                record = parse_record(line)
                if record is None or (since is not None and record.when < since):
                    continue
                chunk = format_record(record, options.timestamps)
                if remaining is not None:
                    chunk = chunk[:remaining]
                    remaining -= len(chunk)
                if chunk:
                    yield chunk
                if remaining is not None and remaining <= 0:
                    return
            if not options.follow or running is None:
                return
            alive = running()
            await asyncio.sleep(0 if not alive else FOLLOW_POLL_SECONDS)
            data = pending + log.read()
            lines = data.split(b"\n")
            pending = lines.pop()
            if not alive and not lines:
                return
