"""The in-sandbox command wrapper, shared by every backend that execs into a container.

Neither the Kubernetes exec API nor Docker's can kill an exec'd process, bound it in time
from inside, or tell when the command (rather than a background child still holding its
pipes) has ended. So a command runs under :data:`WRAPPER`, a POSIX ``sh`` script that takes
everything as positional arguments (no shell text is built from user data): it starts the
command with ``setsid`` as its own process group, reports the group id in a start marker,
runs an optional watchdog that kills the group after a timeout, and writes an end marker
with the exit status to stdout and stderr. A caller kills the group from a second exec
running :data:`KILL`. :class:`OutputStream` strips the markers from the output byte-exactly
and keeps a bounded copy. :mod:`sandboxkit.backends.kubernetes.exec` explains the protocol
in full; :mod:`sandboxkit.backends.docker.exec` uses the same script over Docker's exec API, and
:mod:`sandboxkit.backends.session` drives both.

Markers are ``\\0sbxk:<nonce>:<kind><number>\\n``: G/T (start: process group id, or pid for
the /proc tree fallback; stdout only), X/K (end: exit status; K means the watchdog killed
the command).
"""

from __future__ import annotations

import codecs
import contextlib
import io
import math
import re
import secrets
from collections.abc import Callable, Sequence
from typing import IO

from ..errors import ExecProtocolError

__all__ = [
    "KILL",
    "MARKER_TAG",
    "WRAPPER",
    "WRAPPER_FUNCTION",
    "OutputCallback",
    "OutputStream",
    "TextCallback",
    "kill_argv",
    "marker_tag",
    "new_nonce",
    "watchdog_seconds",
    "wrap_argv",
]

OutputCallback = Callable[[bytes], object]

MARKER_TAG = b"\x00sbxk:"
_MARKER_BODY = re.compile(rb"([GTXK])(\d{1,10})")
_MARKER_MAX_TAIL = 16  # kind + digits + newline, with room to spare


# The kill routine shared by the wrapper's watchdog and the kill exec. ``zap G PGID`` kills a
# process group (and its leader, in case setsid has not run yet); ``zap T PID`` stops the
# process and, breadth first, every descendant found through /proc/*/stat (comm may contain
# spaces and parentheses, so the fields are read after the last ") "), then kills them all.
_ZAP = r"""zap() {
  if [ "$1" = G ]; then
    kill -KILL -"$2" 2>/dev/null; kill -KILL "$2" 2>/dev/null; return 0
  fi
  kill -STOP "$2" 2>/dev/null || return 0
  z=" $2 "; more=1
  while [ -n "$more" ]; do
    more=
    for d in /proc/[0-9]*; do
      c=${d#/proc/}
      case $z in *" $c "*) continue ;; esac
      s=
      read -r s 2>/dev/null <"$d/stat" || continue
      s=${s##*) }; s=${s#* }; s=${s%% *}
      case $z in *" $s "*) kill -STOP "$c" 2>/dev/null; z="$z$c "; more=1 ;; esac
    done
  done
  for c in $z; do kill -KILL "$c" 2>/dev/null; done
  return 0
}
"""

# $1 nonce, $2 in-pod timeout in whole seconds (0: none), $3 stdin length ("" : no bound),
# then the user's argv. fd 3 keeps the exec's stdin: POSIX gives background jobs /dev/null
# as stdin before their own redirections (``command exec`` so that a closed stdin is not a
# fatal redirection error). ``wait ... 2>/dev/null`` silences bash's "Killed" job reports
# when /bin/sh is bash.
_WRAPPER_BODY = r"""m=$1; t=$2; n=$3; shift 3
if command -v setsid >/dev/null 2>&1; then k=G; else k=T; fi
run() { if [ "$k" = G ]; then exec setsid "$@"; else exec "$@"; fi; }
{ command exec 3<&0; } 2>/dev/null || exec 3</dev/null
if [ -n "$n" ] && command -v head >/dev/null 2>&1; then
  head -c "$n" <&3 3<&- | run "$@" 3<&- &
else
  run "$@" <&3 3<&- &
fi
p=$!
exec 3<&-
printf '\000sbxk:%s:%s%s\n' "$m" "$k" "$p"
w=
if [ "$t" -gt 0 ] 2>/dev/null; then
  (
    trap 'kill -KILL "$s" 2>/dev/null; wait "$s"; exit 1' TERM
    sleep "$t" & s=$!
    wait "$s" || exit 1
    trap '' TERM
    zap "$k" "$p"
    exit 0
  ) </dev/null >/dev/null 2>&1 &
  w=$!
fi
wait "$p" 2>/dev/null; r=$?
x=X
if [ -n "$w" ]; then kill "$w" 2>/dev/null; wait "$w" 2>/dev/null && x=K; fi
printf '\000sbxk:%s:%s%s\n' "$m" "$x" "$r"
printf '\000sbxk:%s:%s%s\n' "$m" "$x" "$r" >&2
"""

WRAPPER = _ZAP + _WRAPPER_BODY + 'exit "$r"\n'

WRAPPER_FUNCTION = _ZAP + "sandboxkit_wrap() {\n" + _WRAPPER_BODY + 'return "$r"\n}\n'
"""The wrapper as the shell function ``sandboxkit_wrap`` (same arguments), for a shell
that runs many commands (:mod:`.loop`): called in the foreground it costs no fork of its
own. It sets the wrapper's variables (m t n k p w r x s z c d more) in the caller."""

KILL = _ZAP + 'zap "$1" "$2"\n'


def new_nonce() -> str:
    """A per-call random token: output can only fake a marker by reading the wrapper's argv."""
    return secrets.token_hex(16)


def marker_tag(nonce: str) -> bytes:
    """The prefix of every marker of the call made with ``nonce``."""
    return MARKER_TAG + nonce.encode() + b":"


def wrap_argv(argv: Sequence[str], nonce: str, *, timeout: float | None = None,
              stdin_length: int | None = None) -> list[str]:
    """``argv`` under the wrapper: a watchdog kills it after ``ceil(timeout)`` seconds (None:
    never), and stdin is cut after ``stdin_length`` bytes when given (for exec protocols
    that cannot send EOF)."""
    watchdog = watchdog_seconds(timeout)
    bound = "" if stdin_length is None else str(stdin_length)
    return ["/bin/sh", "-c", WRAPPER, "sandboxkit-exec", nonce, str(watchdog), bound, *argv]


def watchdog_seconds(timeout: float | None) -> int:
    """The in-sandbox watchdog's whole seconds for a client ``timeout`` (0: none): never
    earlier than the client, which kills at ``timeout`` itself."""
    return math.ceil(timeout) if timeout is not None else 0


def kill_argv(kind: str, pid: int) -> list[str]:
    """The argv that SIGKILLs what a wrapped command started, given its start marker
    (``G`` and a process group id, or ``T`` and the pid of a process tree)."""
    return ["/bin/sh", "-c", KILL, "sandboxkit-kill", kind, str(pid)]


class TextCallback:
    """Adapts ``fn(str)`` to the byte output callbacks sandboxkit takes.

    Decoding is incremental (UTF-8, invalid bytes replaced), so a character split across
    two frames arrives whole. :meth:`OutputStream.finish` flushes it when the stream ends.
    """

    def __init__(self, fn: Callable[[str], object], encoding: str = "utf-8") -> None:
        self._fn = fn
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="replace")

    def __call__(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if text:
            self._fn(text)

    def flush(self) -> None:
        text = self._decoder.decode(b"", final=True)
        if text:
            self._fn(text)


class OutputStream:
    """One output channel: strips the wrapper's markers, keeps at most ``limit`` bytes and
    passes every byte of the command's output to the callback and the sink."""

    def __init__(self, limit: int, callback: OutputCallback | None, sink: IO[bytes] | None,
                 tag: bytes | None) -> None:
        self._limit = limit
        self._callback = callback
        self._sink = sink
        self._tag = tag
        self._kept = io.BytesIO()  # getvalue() hands over its buffer without a copy
        self._held = b""  # a possible marker prefix, split across frames
        self.truncated = False
        self.ended = False  # the end marker arrived; later bytes are background children's
        self.muted = False  # set while aborting: the callback already raised once

    def feed(self, data: bytes) -> list[tuple[str, int]]:
        """Take a frame's bytes: pass the output on, return the markers found in them."""
        pieces, markers = self.split(data)
        self.emit(pieces)
        return markers

    def split(self, data: bytes) -> tuple[list[bytes], list[tuple[str, int]]]:
        """Separate a frame's bytes into output pieces and markers, without emitting.

        Parsing comes first so that a callback raising on the output (Ctrl-C in a notebook)
        cannot lose a marker that arrived in the same frame, such as the process group id
        needed to kill the command.
        """
        if self.ended:
            return [], []
        tag = self._tag
        if tag is None:
            return [data], []
        if self._held:
            data = self._held + data
            self._held = b""
        pieces: list[bytes] = []
        markers: list[tuple[str, int]] = []
        while data:
            at = data.find(tag)
            if at < 0:
                # Hold back a tail that may begin a marker. The tag's first byte (NUL)
                # occurs nowhere else in a marker, so only the last NUL can start one.
                nul = data.rfind(b"\x00", max(0, len(data) - len(tag) + 1))
                if nul >= 0 and tag.startswith(data[nul:]):
                    pieces.append(data[:nul])
                    self._held = data[nul:]
                else:
                    pieces.append(data)
                break
            newline = data.find(b"\n", at + len(tag))
            if newline < 0:
                if len(data) - at - len(tag) > _MARKER_MAX_TAIL:
                    raise ExecProtocolError("malformed sandboxkit marker in the exec stream")
                pieces.append(data[:at])
                self._held = data[at:]
                break
            match = _MARKER_BODY.fullmatch(data, at + len(tag), newline)
            if match is None:
                raise ExecProtocolError("malformed sandboxkit marker in the exec stream")
            pieces.append(data[:at])
            kind = match.group(1).decode()
            markers.append((kind, int(match.group(2))))
            data = data[newline + 1:]
            if kind in ("X", "K"):
                self.ended = True  # what follows is background children's output
                break
        return pieces, markers

    def emit(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self._emit(piece)

    def _emit(self, data: bytes) -> None:
        if not data:
            return
        if not self.muted:
            if self._callback is not None:
                self._callback(data)
            if self._sink is not None:
                self._sink.write(data)
        room = self._limit - self._kept.tell()
        if room >= len(data):
            self._kept.write(data)
        else:
            if room > 0:
                self._kept.write(data[:room])
            self.truncated = True

    def finish(self) -> None:
        """The stream is over: release a held tail (it was output, not a marker) and flush
        incremental text callbacks."""
        if self._held and not self.ended:
            held, self._held = self._held, b""
            with contextlib.suppress(Exception):
                self._emit(held)
        if isinstance(self._callback, TextCallback):
            with contextlib.suppress(Exception):
                self._callback.flush()

    def value(self) -> bytes:
        return self._kept.getvalue()
