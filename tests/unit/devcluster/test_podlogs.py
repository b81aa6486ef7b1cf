"""Reading CRI log files with PodLogOptions, as the kubelet serves pods/log."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from sandboxkit.devcluster.podlogs import LogOptions, parse_record, read_logs

LOG = (
    b"2024-05-01T10:00:00.5Z stdout F first\n"
    b"2024-05-01T10:00:01.000000001Z stderr F second\n"
    b"2024-05-01T10:00:02Z stdout P par\n"
    b"2024-05-01T10:00:02.1Z stdout F tial\n"
    b"2024-05-01T10:00:03Z stdout F \n"
)


def collect(path: Path, options: LogOptions, running=None) -> bytes:  # type: ignore[no-untyped-def]
    async def main() -> bytes:
        return b"".join([chunk async for chunk in read_logs(path, options, running)])

    return asyncio.run(main())


def write(tmp_path: Path, data: bytes = LOG) -> Path:
    path = tmp_path / "0.log"
    path.write_bytes(data)
    return path


def test_plain_output_joins_partial_lines(tmp_path: Path) -> None:
    assert collect(write(tmp_path), LogOptions()) == b"first\nsecond\npartial\n\n"


def test_timestamps_use_nine_digits(tmp_path: Path) -> None:
    out = collect(write(tmp_path), LogOptions(timestamps=True, tail_lines=3))
    assert out.splitlines() == [
        b"2024-05-01T10:00:02.000000000Z par2024-05-01T10:00:02.100000000Z tial",
        b"2024-05-01T10:00:03.000000000Z ",
    ]


def test_tail_since_and_limit(tmp_path: Path) -> None:
    path = write(tmp_path)
    assert collect(path, LogOptions(tail_lines=1)) == b"\n"
    assert collect(path, LogOptions(tail_lines=0)) == b""
    since = datetime(2024, 5, 1, 10, 0, 1, tzinfo=UTC)
    assert collect(path, LogOptions(since_time=since)) == b"second\npartial\n\n"
    assert collect(path, LogOptions(limit_bytes=8)) == b"first\nse"
    assert collect(path, LogOptions(since_seconds=60)) == b""  # all records are old


def test_parse_record_rejects_garbage() -> None:
    assert parse_record(b"not a record") is None
    record = parse_record(b"2024-05-01T10:00:00.123456789Z stderr P x y")
    assert record is not None
    assert (record.stream, record.partial, record.text, record.nanos) == (
        "stderr", True, b"x y", 123456789)


def test_follow_streams_until_the_container_stops(tmp_path: Path) -> None:
    path = write(tmp_path, b"2024-05-01T10:00:00Z stdout F one\n")
    alive = True

    async def main() -> list[bytes]:
        nonlocal alive
        chunks: list[bytes] = []

        async def writer() -> None:
            nonlocal alive
            await asyncio.sleep(0.2)
            with path.open("ab") as f:
                f.write(b"2024-05-01T10:00:01Z stdout F two\n2024-05-01T10:00:02Z std")
                f.flush()
                await asyncio.sleep(0.2)
                f.write(b"out F three\n")
            alive = False

        task = asyncio.create_task(writer())
        async for chunk in read_logs(path, LogOptions(follow=True), lambda: alive):
            chunks.append(chunk)
        await task
        return chunks

    assert asyncio.run(asyncio.wait_for(main(), 5)) == [b"one\n", b"two\n", b"three\n"]
