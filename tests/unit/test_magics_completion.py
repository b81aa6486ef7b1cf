"""Tab completion of the sandbox magics: the pure rules (which word gets which candidates),
and the same through a real IPython shell's completer, installed by ``%load_ext`` and gone
after ``%unload_ext``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from IPython.core.completer import provisionalcompleter
from IPython.core.interactiveshell import InteractiveShell

from sandboxkit.magics import SandboxMagics
from sandboxkit.magics.completion import complete_line, magic_parsers

PARSERS = magic_parsers(SandboxMagics())
KERNEL = ["web", "worker"]
ELSEWHERE = ["old-job", "other"]


def complete(text: str) -> tuple[str, list[str]]:
    return complete_line(text, PARSERS, sandbox_names=lambda words: KERNEL,
                         attachable_names=lambda words: ELSEWHERE)


def test_every_magic_with_arguments_has_a_parser() -> None:
    assert {"sandbox_up", "sandbox_exec", "sandbox_attach", "sandbox_down",
            "sandbox_logs", "sandbox_upload", "sandbox_write"} <= set(PARSERS)


@pytest.mark.parametrize(("text", "expected"), [
    ("%sandbox_exec --ch", ("--ch", ["--check"])),
    ("%%sandbox_exec web --t", ("--t", ["--timeout"])),
    ("%sandbox_up --k", ("--k", ["--keep-on-failure", "--keep"])),
    ("%sandbox_logs --", ("--", ["--sandbox", "--tail"])),
    ("%sandbox_up --image x --wo", ("--wo", ["--workdir"])),
])
def test_options_are_those_the_magic_declares(text: str, expected: tuple[str, list[str]],
                                              ) -> None:
    fragment, candidates = complete(text)
    assert (fragment, sorted(candidates)) == (expected[0], sorted(expected[1]))


@pytest.mark.parametrize(("text", "expected"), [
    ("%sandbox_exec ", ("", KERNEL)),
    ("%sandbox_exec w", ("w", KERNEL)),
    ("%sandbox_exec wo", ("wo", ["worker"])),
    ("%sandbox_logs --tail 5 ", ("", KERNEL)),
    ("%sandbox_upload -s ", ("", KERNEL)),
    ("%sandbox_upload --sandbox we", ("we", ["web"])),
    ("%sandbox_down --all -s w", ("w", KERNEL)),
    ("%sandbox_attach ", ("", ELSEWHERE)),
    ("%sandbox_attach -n ci o", ("o", ELSEWHERE)),
])
def test_sandbox_names_at_name_positions(text: str, expected: tuple[str, list[str]]) -> None:
    assert complete(text) == expected


@pytest.mark.parametrize("text", [
    "%sandbox_up ",  # a new name: nothing to offer
    "%sandbox_upload web ",  # the local path, not a sandbox
    "%sandbox_upload -s web ",  # the first positional is NAME, but -s named it: still LOCAL
    "%sandbox_exec --timeout ",  # an option's value
    "%sandbox_exec web -- ls --",  # the command is the shell's
    "%sandbox_exe",  # the magic's own name is IPython's to complete
    "print(1)",
    "%timeit --",  # not ours
])
def test_no_candidates(text: str) -> None:
    assert complete(text)[1] == []


def test_a_failing_source_is_not_this_function_s_concern_but_the_matcher_s() -> None:
    def broken(words: list[str]) -> list[str]:
        raise RuntimeError("cluster down")

    with pytest.raises(RuntimeError):
        complete_line("%sandbox_attach ", PARSERS, sandbox_names=broken,
                      attachable_names=broken)


class _Named:
    """Enough of a sandbox for the registry (and the extension's unload)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def teardown(self, wait: bool = False) -> None:
        del wait


@pytest.fixture
def shell(offline: Path) -> Iterator[Any]:
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "sandboxkit")
    try:
        yield ip
    finally:
        ip.run_line_magic("unload_ext", "sandboxkit")


def _completions(ip: Any, text: str) -> list[str]:
    """What the shell offers at the end of ``text`` from the sandbox matcher (other
    matchers, Jedi's and the file names', answer where it has nothing)."""
    with provisionalcompleter():
        return [c.text for c in ip.Completer.completions(text, len(text))
                if "match_sandbox_magic" in c._origin]


def test_through_ipython_completer(shell: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    magics = shell.magics_manager.registry["SandboxMagics"]
    magics.registry.add(_Named("web"), keep=True)
    assert _completions(shell, "%sandbox_exec --ch") == ["--check"]
    assert _completions(shell, "%sandbox_logs -s w") == ["web"]
    assert _completions(shell, "%sandbox_up --keep-o") == ["--keep-on-failure"]
    with provisionalcompleter():  # the candidate replaces the word typed
        (only,) = shell.Completer.completions("%sandbox_up --keep-o", 20)
    assert (only.start, only.end) == (12, 20)


def test_attach_lists_the_backend_s_sandboxes_and_swallows_errors(
        shell: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from sandboxkit.backends.local import LocalSandbox

    configs: list[Any] = []
    answers: list[Any] = [RuntimeError("the cluster is down"),
                          [SimpleNamespace(name="left-over"), SimpleNamespace(name="lab")]]

    def listing(cls: type, config: Any = None) -> list[Any]:
        configs.append(config)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(LocalSandbox, "list_sandboxes", classmethod(listing))
    assert _completions(shell, "%sandbox_attach --backend local ") == []
    assert sorted(_completions(shell, "%sandbox_attach --backend local l")) == [
        "lab", "left-over"]  # IPython sorts them
    assert [config.execution_backend for config in configs] == ["local", "local"]


def test_a_backend_that_does_not_answer_gives_no_names_in_time(
        shell: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from sandboxkit.backends.local import LocalSandbox
    from sandboxkit.magics import completion

    release = threading.Event()

    def hanging(cls: type, config: Any = None) -> list[Any]:
        release.wait(30)
        return [SimpleNamespace(name="late")]

    monkeypatch.setattr(completion, "LIST_TIMEOUT", 0.2)
    monkeypatch.setattr(LocalSandbox, "list_sandboxes", classmethod(hanging))
    started = time.monotonic()
    try:
        assert _completions(shell, "%sandbox_attach --backend local ") == []
    finally:
        release.set()
    assert time.monotonic() - started < 5


def test_unload_removes_the_matcher(offline: Path) -> None:
    ip = InteractiveShell.instance()
    before = list(ip.Completer.custom_matchers)
    ip.run_line_magic("load_ext", "sandboxkit")
    assert len(ip.Completer.custom_matchers) == len(before) + 1
    ip.run_line_magic("unload_ext", "sandboxkit")
    assert ip.Completer.custom_matchers == before
