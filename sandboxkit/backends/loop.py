"""The persistent exec session's in-sandbox loop, and the requests a client sends it.

An exec round trip costs a WebSocket handshake, an API-server proxy hop and a runtime
``exec`` (a new process in the container's namespaces) before the command even starts.
A session pays that once: one exec runs :data:`LOOP`, a POSIX ``sh`` loop that reads one
request per command from its stdin and runs the command under the very same
:data:`~.wrapper.WRAPPER` as a one-exec call (setsid process group, start and end markers
with a per-call nonce, watchdog), so every guarantee of that wrapper holds unchanged.

Protocol, per command (client -> loop on the session's stdin, loop -> client on its
stdout and stderr):

1. Request (:func:`encode_request`): ``<nonce> <watchdog seconds> <argc>``, then per
   argument its number of lines and the lines themselves. ``IFS= read -r`` reads one line
   verbatim and, on a pipe, never a byte more (POSIX), so the argv arrives as data: no
   shell text is built from it, no tool but the shell's ``read`` touches the session's
   stdin, and no ``$(...)`` (a fork per argument) is needed to decode it.
2. The loop writes a begin marker (``B0``, :func:`begin_marker`) on stdout and stderr,
   starts two relays (``cat FIFO``) from a fresh pair of FIFOs onto its stdout and stderr,
   and runs the wrapper with stdin ``/dev/null`` (a command never reads the session's
   stdin) and stdout/stderr on the FIFOs. Everything before the begin marker on a channel
   is the previous command's leftovers and is dropped (:class:`BeginFilter`).
3. The client reads the command's output up to both end markers, exactly as for a one-exec
   call, and then sends :data:`ACK`. The loop kills the relays and removes the FIFOs: a
   background child still writing gets EPIPE, as when a one-exec call closes its stream
   (output after the end marker is dropped, the documented semantics). The loop prepares
   FIFOs in batches, between commands.

Exit codes come from the end marker, the wrapper's own exit status: the session exec does
not end per command. :data:`UNSUPPORTED` is the loop's exit status when the image lacks a
tool it needs (``mkfifo``, ``cat``, ``rm``, a writable temporary directory); callers then
fall back to one exec per command.
"""

from __future__ import annotations

from collections.abc import Sequence

from .wrapper import WRAPPER_FUNCTION, marker_tag

__all__ = ["ACK", "LOOP", "UNSUPPORTED", "BeginFilter", "begin_marker", "encode_request",
           "loop_argv"]

UNSUPPORTED = 113
"""The loop's exit status when the image lacks what it needs."""

ACK = b"ok\n"
"""Sent once both end markers of a command arrived: the loop may clean up after it."""

_BATCH = 8
"""FIFO pairs made (and removed) per ``mkfifo`` (``rm``): two execs per command saved."""

# sbx_fifos N: the FIFO pairs of batch N, for the commands N*_BATCH ... N*_BATCH+_BATCH-1.
_FIFOS = "sbx_fifos() {\n  mkfifo " + " ".join(
    f'"$sbx_d/o$1.{slot}" "$sbx_d/e$1.{slot}"' for slot in range(_BATCH)) + "\n}\n"

# $1 the session's own token (names its private directory). The loop sets no trap: the
# wrapper ends its watchdog subshell with TERM right after forking it when a command is
# quick, and a signal that reaches a fork before it reset the loop's traps is taken for
# the loop's (dash then loses it, leaving the watchdog and the wrapper waiting on it for
# good; bash runs the loop's EXIT trap in the child). It cleans up when its stdin ends.
# The loop's variables are sbx_*: the wrapper runs as a function in this shell (no fork
# of its own) and sets its own. Command i uses FIFO pair i % _BATCH of batch i / _BATCH;
# the next batch is made, the one before it removed, after the ack, and the next relays
# are started then too: all off the next command's path. While idle the loop holds the
# relays' FIFOs open for writing on fds 5 and 6 (closed for the wrapper), so a relay
# ends with the loop: a loop that dies while idle ends the exec stream at once (a
# runtime streams an exec until every writer of its pipes is gone, relays included).
LOOP = WRAPPER_FUNCTION + _FIFOS + r"""
for sbx_tool in mkfifo cat rm; do
  command -v "$sbx_tool" >/dev/null 2>&1 || {
    echo "sandboxkit: the exec session needs $sbx_tool" >&2; exit 113; }
done
sbx_d=${TMPDIR:-/tmp}/.sandboxkit-session-$1
mkdir -m 700 "$sbx_d" 2>/dev/null || {
  echo "sandboxkit: cannot create $sbx_d for the exec session" >&2; exit 113; }
sbx_a= sbx_b=
sbx_end() {
  kill $sbx_a $sbx_b 2>/dev/null
  rm -rf "$sbx_d"
  exit "$1"
}
sbx_fifos 0 || sbx_end 113
sbx_nl='
'
sbx_i=0
sbx_relays() {
  sbx_f=$((sbx_i / _BATCH_)).$((sbx_i % _BATCH_))
  cat "$sbx_d/o$sbx_f" </dev/null &
  sbx_a=$!
  cat "$sbx_d/e$sbx_f" </dev/null >&2 &
  sbx_b=$!
  exec 5>"$sbx_d/o$sbx_f" 6>"$sbx_d/e$sbx_f"
}
sbx_relays
while IFS=' ' read -r sbx_m sbx_t sbx_c; do
  set --
  while [ "$sbx_c" -gt 0 ]; do
    IFS= read -r sbx_k && IFS= read -r sbx_x || sbx_end 0
    while [ "$sbx_k" -gt 1 ]; do
      IFS= read -r sbx_y || sbx_end 0
      sbx_x=$sbx_x$sbx_nl$sbx_y
      sbx_k=$((sbx_k - 1))
    done
    set -- "$@" "$sbx_x"
    sbx_c=$((sbx_c - 1))
  done
  printf '\000sbxk:%s:B0\n' "$sbx_m"
  printf '\000sbxk:%s:B0\n' "$sbx_m" >&2
  sandboxkit_wrap "$sbx_m" "$sbx_t" "" "$@" </dev/null >&5 2>&6 5>&- 6>&-
  IFS= read -r sbx_y
  exec 5>&- 6>&-
  kill "$sbx_a" "$sbx_b" 2>/dev/null
  wait "$sbx_a" "$sbx_b" 2>/dev/null
  sbx_i=$((sbx_i + 1))
  if [ $((sbx_i % _BATCH_)) -eq 0 ]; then
    rm -f "$sbx_d"/?$((sbx_i / _BATCH_ - 1)).*
  elif [ $((sbx_i % _BATCH_)) -eq 1 ]; then
    sbx_fifos $((sbx_i / _BATCH_ + 1)) || sbx_end 113
  fi
  sbx_relays
done
sbx_end 0
""".replace("_BATCH_", str(_BATCH))


def loop_argv(token: str) -> list[str]:
    """The session exec's argv; ``token`` (a nonce) names the loop's private directory."""
    return ["/bin/sh", "-c", LOOP, "sandboxkit-session", token]


def encode_request(nonce: str, watchdog: int, argv: Sequence[str]) -> bytes:
    """One command for the loop: ``argv`` under the wrapper with ``nonce`` and a watchdog
    of ``watchdog`` whole seconds (0: none). Each argument travels as its lines, so any
    string without NUL (which no argv can hold) arrives byte for byte."""
    if not argv:
        raise ValueError("argv must not be empty")
    parts = [f"{nonce} {watchdog} {len(argv)}\n".encode()]
    for arg in argv:
        if "\0" in arg:
            raise ValueError(f"an argument contains a NUL character: {arg!r}")
        lines = arg.encode().split(b"\n")
        parts.append(b"%d\n" % len(lines))
        parts.append(b"\n".join(lines) + b"\n")
    return b"".join(parts)


def begin_marker(nonce: str) -> bytes:
    """What the loop writes on stdout and stderr before it starts the command."""
    return marker_tag(nonce) + b"B0\n"


class BeginFilter:
    """Drops one channel's bytes up to and including the command's begin marker: what
    precedes it is the previous command's background output, relayed before its cleanup."""

    def __init__(self, nonce: str) -> None:
        self._marker = begin_marker(nonce)
        self._held = b""
        self.begun = False

    def __call__(self, data: bytes) -> bytes:
        """The part of ``data`` that belongs to the command (b"" until it has begun)."""
        if self.begun:
            return data
        data = self._held + data
        at = data.find(self._marker)
        if at < 0:
            self._held = data[-(len(self._marker) - 1):]
            return b""
        self.begun = True
        self._held = b""
        return data[at + len(self._marker):]
