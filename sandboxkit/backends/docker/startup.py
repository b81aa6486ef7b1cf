"""Why a sandbox container died as it started: its exit code and output, kept from removal.

The container is created with ``auto_remove``, so the daemon deletes it -- output, exit code
and all -- the moment it exits: ``docker logs NAME`` afterwards finds nothing, and inspecting
it races the removal. :class:`StartWatch` therefore registers, before the container starts,
the two things ``docker run --rm`` registers: a wait for its removal (the daemon answers
the request's headers once the waiter is in place, and the body, the exit code, once the
exited container is removed) and an attach to its stdout and stderr (wired to the
container's streams before the daemon answers the upgrade). Nothing the container says or
returns can then be lost, whenever it dies. :func:`start_failure` turns what was captured
into the cause: an image without ``timeout`` or ``tail`` (the idle command is ``timeout
DEADLINE tail -f /dev/null`` under docker-init) or without ``/bin/sh`` (every command runs
through it), or else the container's own words.
"""

from __future__ import annotations

import re
import time
from typing import Any

from .exec import DockerFrames

__all__ = ["EXIT_WAIT", "OUTPUT_LIMIT", "StartWatch", "missing_program", "start_failure"]

OUTPUT_LIMIT = 2000
"""Characters of the container's output a startup error quotes (its end, where the error
is)."""

EXIT_WAIT = 30.0
"""Seconds to wait for an exited container's removal (and so its exit code)."""

_NOT_FOUND = re.compile(r"not found|no such file or directory|can't execute|failed to run",
                        re.IGNORECASE)
_IDLE_HINT = ("The Docker backend runs `timeout ACTIVE_DEADLINE tail -f /dev/null` to bound "
              "the container's life, and every command through /bin/sh; use an image with "
              "coreutils or busybox.")


def missing_program(text: str, exit_code: int | None = None) -> str | None:
    """``timeout``, ``tail`` or ``/bin/sh`` when ``text`` (a runtime error, docker-init's or
    timeout's complaint) says the image lacks it, else None.

    A missing ``timeout`` stops docker-init (``exec timeout failed: No such file or
    directory``, exit code 127) before ``tail`` is ever named, so a text naming ``tail`` is
    about ``tail``.
    """
    if not (_NOT_FOUND.search(text) or exit_code == 127):
        return None
    for program, pattern in (("/bin/sh", r"/bin/sh"), ("tail", r"\btail\b"),
                             ("timeout", r"\btimeout\b")):
        if re.search(pattern, text):
            return program
    return None


def start_failure(name: str, image: str, text: str, exit_code: int | None = None) -> str:
    """The SandboxStartupError message for container ``name`` of ``image`` that failed to
    start (``exit_code`` None: the runtime refused to start it) with output ``text``."""
    text = text.strip()
    if len(text) > OUTPUT_LIMIT:
        text = "..." + text[-OUTPUT_LIMIT:]
    how = ("did not start" if exit_code is None
           else f"exited right after starting (exit code {exit_code})")
    program = missing_program(text, exit_code)
    if program is not None:
        said = text or "no output"
        return f"container {name} {how}: image {image} has no `{program}` ({said}). {_IDLE_HINT}"
    return f"container {name} {how}: {text or 'it printed nothing'}"


class StartWatch:
    """A container's exit code and output from before it starts (see the module docstring).

    Create it between ``create`` and ``start``; :meth:`outcome` after a sign of death (a
    failed probe, a stopped state) gives the exit code and output; :meth:`close` once the
    container runs, which also cancels the daemon's waiter.
    """

    def __init__(self, api: Any, container: str) -> None:
        # docker-py's wait() reads the whole answer; the streamed POST returns at the
        # headers, which the daemon sends only once the waiter is registered. "removed"
        # (what `docker run --rm` waits for) answers once the daemon has removed the
        # exited container, so nothing of it is left to race with afterwards; the read
        # timeout bounds that wait should the removal hang.
        self._wait = api._post(api._url("/containers/{0}/wait", container),
                               params={"condition": "removed"}, stream=True,
                               timeout=EXIT_WAIT)
        try:
            api._raise_for_status(self._wait)
            self._frames = DockerFrames(
                api.attach_socket(container, params={"stdout": 1, "stderr": 1, "stream": 1}),
                None)
        except BaseException:
            self._wait.close()
            raise

    def outcome(self, timeout: float = 10.0) -> tuple[int | None, str]:
        """``(exit code, output)`` once the container has exited and been removed; the code
        is None and the output what came so far if it does not end within ``timeout``
        seconds."""
        deadline = time.monotonic() + timeout
        chunks: list[bytes] = []
        while not self._frames.closed and time.monotonic() < deadline:
            chunks.extend(data for _, data in self._frames.pump(deadline - time.monotonic()))
        output = b"".join(chunks).decode("utf-8", "replace")
        if not self._frames.closed:
            return None, output
        try:
            code = self._wait.json().get("StatusCode")
        except Exception:  # the daemon went away: the output is still worth reporting
            code = None
        return (None if code is None else int(code)), output

    def close(self) -> None:
        self._frames.close()
        self._wait.close()
