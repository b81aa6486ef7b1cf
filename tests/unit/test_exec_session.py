"""The exec session engine on its own: a scripted frame source and a fake clock stand in for
a backend, so every rule (markers before callbacks, grace, kill on timeout and interrupt,
no invented exit codes) is checked without a server, and without waiting in real time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sandboxkit.backends import session as engine
from sandboxkit.backends.session import STDERR, STDOUT, ExecSession, Outcome
from sandboxkit.backends.wrapper import OutputStream, marker_tag
from sandboxkit.errors import ExecError, ExecProtocolError

NONCE = "0123456789abcdef0123456789abcdef"
TAG = marker_tag(NONCE)
GRACE = 0.5


def marker(kind: str, value: int) -> bytes:
    return TAG + f"{kind}{value}\n".encode()


def ends(code: int, kind: str = "X") -> list[tuple[int, bytes]]:
    return [(STDOUT, marker(kind, code)), (STDERR, marker(kind, code))]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class ScriptedFrames:
    """Hands out one scripted batch per pump; with none left, the pump waits out its
    timeout on the fake clock (``None`` there would hang a real session: an error here).
    A batch ``"close"`` ends the stream; ``(at, frames)`` arrives at fake time ``at``."""

    def __init__(self, clock: Clock, batches: list[Any]) -> None:
        self._clock = clock
        self.batches = list(batches)
        self._closed = False
        self.pumps: list[float | None] = []

    @property
    def closed(self) -> bool:
        return self._closed

    def pump(self, timeout: float | None) -> list[tuple[int, bytes]]:
        self.pumps.append(timeout)
        if self.batches and isinstance(self.batches[0], tuple):
            at, frames = self.batches[0]
            wait = at - self._clock.now
            if timeout is not None and wait > timeout:
                self._clock.now += timeout
                return []
            self._clock.now = max(self._clock.now, at)
            self.batches.pop(0)
            return frames
        if self.batches:
            batch = self.batches.pop(0)
            if batch == "close":
                self._closed = True
                return []
            return batch
        assert timeout is not None, "the session would wait forever"
        self._clock.now += timeout
        return []


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(engine, "time", fake)
    return fake


class Harness:
    def __init__(self, clock: Clock, batches: list[Any], *, exit_code: int | None = None,
                 on_stdout: Callable[[bytes], object] | None = None, wrapped: bool = True,
                 on_kill: Callable[[ScriptedFrames], None] | None = None) -> None:
        self.frames = ScriptedFrames(clock, batches)
        self.seen: list[bytes] = []
        self.kills: list[tuple[str, int]] = []
        self.exit_calls = 0
        tag = TAG if wrapped else None
        self.stdout = OutputStream(1 << 20, on_stdout or self.seen.append, None, tag)
        self.stderr = OutputStream(1 << 20, None, None, tag)

        def exits() -> int | None:
            self.exit_calls += 1
            return exit_code

        def kill(kind: str, pid: int) -> None:
            self.kills.append((kind, pid))
            if on_kill is not None:
                on_kill(self.frames)

        self.session = ExecSession(self.frames, self.stdout, self.stderr, exits,
                                   kill=kill if wrapped else None, grace=GRACE)

    def run(self, deadline: float | None = None) -> Outcome:
        return self.session.run(deadline)


def test_markers_are_stripped_and_the_exit_source_wins(clock: Clock) -> None:
    run = Harness(clock, [[(STDOUT, b"o" + marker("G", 42) + b"ut")],
                          [(STDOUT, b"!" + marker("X", 3)), (STDERR, b"e" + marker("X", 3))],
                          "close"], exit_code=7)
    assert run.run() == Outcome(7, timed_out=False)
    assert run.seen == [b"o", b"ut", b"!"] and run.stdout.value() == b"out!"
    assert run.stderr.value() == b"e"
    assert run.session.start == ("G", 42) and run.session.end == ("X", 3)
    assert run.kills == []


def test_markers_split_across_frames_are_still_found(clock: Clock) -> None:
    whole = b"a" + marker("G", 5) + b"b" + marker("X", 0)
    frames = [[(STDOUT, whole[i:i + 3])] for i in range(0, len(whole), 3)]
    run = Harness(clock, [*frames, [(STDERR, marker("X", 0))], "close"], exit_code=0)
    assert run.run() == Outcome(0, timed_out=False)
    assert run.stdout.value() == b"ab" and run.session.start == ("G", 5)


def test_after_both_end_markers_the_grace_is_waited_then_the_marker_answers(
    clock: Clock,
) -> None:
    started = clock.now
    run = Harness(clock, [[(STDOUT, b"done")], ends(4)])  # the stream never closes
    assert run.run(deadline=started + 100) == Outcome(4, timed_out=False)
    assert clock.now - started == pytest.approx(GRACE)
    assert run.exit_calls == 1  # asked first: a real status beats the marker


def test_no_grace_is_waited_before_both_markers(clock: Clock) -> None:
    """One end marker is not the end: stderr may still hold output, so the session waits
    for the stream (here until its deadline) instead of ending after the grace."""
    started = clock.now
    run = Harness(clock, [[(STDOUT, marker("G", 8) + marker("X", 0))]],
                  on_kill=lambda frames: frames.batches.append([(STDERR, marker("X", 137))]))
    outcome = run.run(deadline=started + 10)
    assert outcome.timed_out and clock.now - started >= 10
    assert run.kills == [("G", 8)]


def test_a_stream_closing_within_the_grace_ends_the_call_at_once(clock: Clock) -> None:
    started = clock.now
    run = Harness(clock, [ends(0), "close"], exit_code=0)
    assert run.run() == Outcome(0, timed_out=False)
    assert clock.now == started


def test_the_deadline_kills_the_group_named_by_the_start_marker(clock: Clock) -> None:
    started = clock.now

    def wrapper_reports_the_kill(frames: ScriptedFrames) -> None:
        frames.batches.append(ends(137))

    run = Harness(clock, [[(STDOUT, marker("G", 11) + b"so far")]],
                  on_kill=wrapper_reports_the_kill)
    outcome = run.run(deadline=started + 2)
    assert run.kills == [("G", 11)]
    assert outcome == Outcome(137, timed_out=True)  # the marker's status, as no source has one
    assert run.stdout.value() == b"so far"
    assert clock.now - started == pytest.approx(2)


def test_a_timeout_waits_briefly_for_a_late_start_marker(clock: Clock) -> None:
    started = clock.now
    late = started + 1 + engine.START_WAIT / 2  # after the deadline, within START_WAIT
    run = Harness(clock, [(late, [(STDOUT, marker("T", 99))])],
                  on_kill=lambda frames: frames.batches.append(ends(137)))
    assert run.run(deadline=started + 1) == Outcome(137, timed_out=True)
    assert run.kills == [("T", 99)]
    assert clock.now == pytest.approx(late)


def test_a_timeout_without_a_start_marker_kills_nothing_and_reports_unknown(
    clock: Clock,
) -> None:
    started = clock.now
    run = Harness(clock, [[(STDOUT, b"no marker")]])
    assert run.run(deadline=started + 1) == Outcome(-1, timed_out=True)
    assert run.kills == []
    assert clock.now - started == pytest.approx(1 + engine.START_WAIT + engine.KILL_DRAIN)


def test_a_server_failure_after_a_timeout_is_still_the_timeout(clock: Clock) -> None:
    frames = ScriptedFrames(clock, [[(STDOUT, marker("G", 3))]])
    out = OutputStream(100, None, None, TAG)
    err = OutputStream(100, None, None, TAG)

    def failing() -> int | None:
        raise ExecError("container not running", reason="InternalError")

    session = ExecSession(frames, out, err, failing, kill=lambda kind, pid: None, grace=GRACE)
    assert session.run(clock.now + 1) == Outcome(-1, timed_out=True)


def test_unwrapped_timeout_only_ends_the_call(clock: Clock) -> None:
    started = clock.now
    run = Harness(clock, [[(STDOUT, b"raw")]], wrapped=False)
    assert run.run(deadline=started + 1) == Outcome(-1, timed_out=True)
    assert clock.now - started == pytest.approx(1)  # no wait for markers that cannot come
    assert run.stdout.value() == b"raw"


def test_the_in_sandbox_watchdog_is_a_timeout(clock: Clock) -> None:
    run = Harness(clock, [[(STDOUT, marker("G", 9))], ends(137, kind="K"), "close"])
    assert run.run() == Outcome(137, timed_out=True)
    assert run.kills == []


def test_a_stream_ended_without_status_or_marker_is_a_protocol_error(clock: Clock) -> None:
    run = Harness(clock, [[(STDOUT, b"partial")], "close"])
    with pytest.raises(ExecProtocolError, match="without an exit status"):
        run.run()
    assert run.kills == []  # the stream is over: nothing is left to kill


def test_an_interrupt_from_a_callback_kills_with_the_marker_of_the_same_pump(
    clock: Clock,
) -> None:
    calls: list[bytes] = []

    def interrupt(data: bytes) -> None:
        calls.append(data)
        raise KeyboardInterrupt

    # The output comes first, the start marker after it in the same pump, and more output
    # while the abort waits: the marker must be seen, the callback not called again.
    run = Harness(clock, [[(STDOUT, b"go\n"), (STDOUT, marker("G", 5))],
                          [(STDOUT, b"more")]], on_stdout=interrupt)
    with pytest.raises(KeyboardInterrupt):
        run.run()
    assert run.kills == [("G", 5)]
    assert calls == [b"go\n"]


def test_an_interrupt_before_the_start_marker_waits_for_it(clock: Clock) -> None:
    calls: list[bytes] = []

    def interrupt(data: bytes) -> None:
        calls.append(data)
        raise KeyboardInterrupt

    run = Harness(clock, [[(STDOUT, b"early")], [], [(STDOUT, b"x" + marker("G", 6))]],
                  on_stdout=interrupt)
    with pytest.raises(KeyboardInterrupt):
        run.run()
    assert run.kills == [("G", 6)]
    assert calls == [b"early"]  # muted while the abort read on


def test_other_channels_are_ignored(clock: Clock) -> None:
    run = Harness(clock, [[(3, b"not output"), (STDOUT, b"out")], ends(0), "close"],
                  exit_code=0)
    assert run.run() == Outcome(0, timed_out=False)
    assert run.stdout.value() == b"out" and run.stderr.value() == b""
