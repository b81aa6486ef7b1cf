"""The README says what the issue asks, in its order, and its commands work.

Every command in a ``bash`` block, and every inline `sandboxkit ...` span, is checked here
as far as it can be without a cluster: sandboxkit commands parse with the real argparse
parser, pytest marker expressions name registered markers, files given with ``-f`` exist.
Running them is left to the tests that do (tests/integration/test_demo.py runs the first
line's ``sandboxkit demo``; test_cli.py, test_devcluster_process.py and the rest run the
others) and to CI (the second line is .ci/run's command; the workflow's kind job runs the
"real cluster" commands).
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from sandboxkit import demo
from sandboxkit.cli import _parse, _parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()

FIRST_COMMANDS = [
    "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/sandboxkit demo",
    ".venv/bin/python -m pytest",
]
# The issue's order; other sections may sit between these.
SECTIONS = ["What sandboxkit is", "In a notebook", "The Python API",
            "Pointing it at a real cluster", "RBAC and cluster setup",
            "Configuration reference", "Troubleshooting", "The devcluster"]
PROGRAMS = {"sandboxkit", ".venv/bin/sandboxkit", ".venv/bin/python", ".venv/bin/pip",
            "python3", "kubectl", "kind"}


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.S | re.M)


def _commands() -> list[list[str]]:
    """Each simple command of the bash blocks as argv: comments dropped, ``&&`` split,
    ``eval "$(...)"`` unwrapped, leading VAR=value assignments removed."""
    commands = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            tokens = shlex.split(line, comments=True)
            while tokens:
                end = tokens.index("&&") if "&&" in tokens else len(tokens)
                argv, tokens = tokens[:end], tokens[end + 1:]
                if argv[:1] == ["eval"]:
                    argv = shlex.split(re.fullmatch(r"\$\((.*)\)", argv[1]).group(1))
                while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):
                    argv = argv[1:]
                if argv:
                    commands.append(argv)
    return commands


def _inline_sandboxkit() -> list[list[str]]:
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", README, flags=re.S | re.M))
    found = []
    for span in spans:
        inner = re.search(r"\$\((sandboxkit [^)]*)\)", span)
        text = inner.group(1) if inner else span
        if text.startswith("sandboxkit "):
            found.append(shlex.split(text))
    return found


def _parses(argv: list[str]) -> None:
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            _parse(argv[1:])  # as main() parses (shell: -- CMD)
    except SystemExit:
        pytest.fail(f"README command does not parse: {shlex.join(argv)}\n{errors.getvalue()}")


def test_first_lines_are_the_two_fresh_machine_commands() -> None:
    lines = README.splitlines()
    assert lines[0] == "# sandboxkit"
    assert lines[1:3] == ["", "```bash"]
    assert lines[3:5] == FIRST_COMMANDS
    assert lines[5] == "```"


def test_sections_in_the_issues_order() -> None:
    headings = re.findall(r"^## (.+)$", README, flags=re.M)
    positions = [headings.index(title) for title in SECTIONS]
    assert positions == sorted(positions), headings
    rbac = README[README.index("## RBAC and cluster setup"):]
    assert "**Deviation from the seed.**" in rbac[:rbac.index("\n## ", 3)]
    assert "Status:" not in README


def test_every_bash_command_is_a_known_program() -> None:
    commands = _commands()
    assert len(commands) > 20
    unknown = [shlex.join(argv) for argv in commands if argv[0] not in PROGRAMS]
    assert not unknown, f"add a check for these to tests/unit/test_readme.py: {unknown}"


def test_every_sandboxkit_command_parses() -> None:
    commands = [argv for argv in _commands() if argv[0].endswith("sandboxkit")]
    commands += _inline_sandboxkit()
    assert {argv[1] for argv in commands} >= {"demo", "lab", "ls", "gc", "rbac", "doctor",
                                              "diagnose", "devcluster"}
    for argv in commands:
        _parses(argv)


def test_pytest_markers_and_manifest_files_exist() -> None:
    ini = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    markers = {entry.split(":")[0] for entry in ini["markers"]}
    for argv in _commands():
        after = argv[argv.index("pytest") + 1:] if "pytest" in argv else []
        if "-m" in after:
            expression = after[after.index("-m") + 1]
            assert set(re.split(r"\s+(?:or|and|not)\s+|^not\s+", expression)) <= markers, argv
        if "-f" in argv:
            assert (ROOT / argv[argv.index("-f") + 1]).is_file(), argv


def test_relative_links_resolve() -> None:
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README):
        assert (ROOT / target).exists(), target


def test_demo_help_states_the_demos_defaults() -> None:
    """The CLI repeats sandboxkit.demo's defaults in its help without importing it."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        _parser().parse_args(["demo", "--help"])
    text = " ".join(out.getvalue().split())
    assert f"(default: {demo.DEFAULT_NAMESPACE})" in text
    assert f"(default: {demo.DEFAULT_IMAGE})" in text
