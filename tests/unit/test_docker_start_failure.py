"""Which cause a Docker start failure is given: the texts the runtime, docker-init,
busybox's and coreutils' ``timeout`` print when a program is missing name that program;
anything else is quoted as the container's own words (the engine's side is in
tests/integration/test_docker_backend.py)."""

from __future__ import annotations

import pytest

from sandboxkit.backends.docker.startup import OUTPUT_LIMIT, missing_program, start_failure


@pytest.mark.parametrize(("text", "code", "program"), [
    ("[FATAL tini (7)] exec timeout failed: No such file or directory", 127, "timeout"),
    ('exec: "timeout": executable file not found in $PATH: unknown', None, "timeout"),
    ("timeout: can't execute 'tail': No such file or directory", 127, "tail"),
    ("timeout: failed to run command \u2018tail\u2019: No such file or directory", 127, "tail"),
    ('exec: "/bin/sh": stat /bin/sh: no such file or directory: unknown', 127, "/bin/sh"),
    ("licence server unreachable", 3, None),
    ("timeout after 5s talking to the licence server", 1, None),
])
def test_missing_program(text: str, code: int | None, program: str | None) -> None:
    assert missing_program(text, code) == program


def test_messages_name_the_cause_or_quote_the_output() -> None:
    missing = start_failure("sb", "img:1", "[FATAL tini (7)] exec timeout failed: No such "
                            "file or directory\n", 127)
    assert missing.startswith("container sb exited right after starting (exit code 127): "
                              "image img:1 has no `timeout` ([FATAL tini")
    assert "coreutils or busybox" in missing and "docker logs" not in missing
    assert start_failure("sb", "img:1", "boom\n", 3) == (
        "container sb exited right after starting (exit code 3): boom")
    assert start_failure("sb", "img:1", "", 0).endswith("it printed nothing")
    assert start_failure("sb", "img:1", "refused").startswith("container sb did not start")
    long = start_failure("sb", "img:1", "x" * (OUTPUT_LIMIT * 2) + "the end", 1)
    assert long.endswith("the end") and len(long) < OUTPUT_LIMIT + 100
