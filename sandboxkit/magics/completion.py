"""Tab completion for the ``%sandbox_*`` magics: their options and sandbox names.

Why it is split in two: :func:`complete_line` is pure (the text before the cursor, each
magic's argparse parser and two name sources in; candidates out), so the rules are
unit-tested without a shell; :func:`sandbox_matcher` adapts it to IPython's completer
(Matcher API v2, ``IPCompleter.custom_matchers``), which the extension adds on load and
removes on unload. Names come from the kernel's registry, and for ``%sandbox_attach`` from
the backend's ``list_sandboxes`` (the sandboxes it could take over); completion runs on
every Tab press, so any error there yields no candidates rather than a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from IPython.core.completer import (
    CompletionContext,
    SimpleCompletion,
    SimpleMatcherResult,
    context_matcher,
)

__all__ = ["LIST_TIMEOUT", "complete_line", "magic_parsers", "sandbox_matcher"]

LIST_TIMEOUT = 3.0
"""Seconds a backend may take to list the sandboxes ``%sandbox_attach`` could take over."""

_SANDBOX_OPTIONS = ("-s", "--sandbox")
_NEW_NAME = {"sandbox_up"}  # NAME is a name to create: nothing to complete
_ATTACHABLE = {"sandbox_attach"}  # NAME is a sandbox outside this kernel

Names = Callable[[list[str]], Iterable[str]]
"""A source of sandbox names, given the words typed so far (``-n``/``--backend`` may
narrow it)."""


def magic_parsers(magics: Any) -> dict[str, argparse.ArgumentParser]:
    """Each magic's argparse parser by magic name, as ``magic_arguments`` attached it, so
    the options offered are exactly those the magic accepts."""
    parsers: dict[str, argparse.ArgumentParser] = {}
    for table in magics.magics.values():
        for name, method in table.items():
            func = getattr(method, "__func__", method)
            parser = getattr(func, "parser", None)
            if isinstance(parser, argparse.ArgumentParser):
                parsers[name] = parser
    return parsers


def _value_options(parser: argparse.ArgumentParser) -> set[str]:
    """The option strings that take a value (the next word is theirs, not a positional)."""
    return {option for action in parser._actions if action.nargs != 0
            for option in action.option_strings}


def _positional_index(words: list[str], takes_value: set[str]) -> int:
    """How many positional arguments ``words`` (the complete words after the magic's name)
    hold: options and their values do not count."""
    count, skip = 0, False
    for word in words:
        if skip:
            skip = False
        elif word.startswith("-"):
            skip = word in takes_value
        else:
            count += 1
    return count


def complete_line(text: str, parsers: Mapping[str, argparse.ArgumentParser], *,
                  sandbox_names: Names, attachable_names: Names) -> tuple[str, list[str]]:
    """``(fragment, candidates)`` for ``text``, the line up to the cursor.

    ``fragment`` is the word being completed (what a candidate replaces). Offered: the
    magic's options after a ``-``; sandbox names after ``-s``/``--sandbox`` and at a
    ``NAME`` position (``attachable_names`` for ``%sandbox_attach``, none for the new name
    of ``%sandbox_up``); nothing after ``--`` (the command) or for another option's value.
    A line that is not one of ``parsers``' magics gives no candidates.
    """
    stripped = text.lstrip()
    if not stripped.startswith("%"):
        return "", []
    head, *words = stripped.split()
    magic = head.lstrip("%")
    parser = parsers.get(magic)
    if parser is None or (not words and not text[-1:].isspace()):
        return "", []  # still typing the magic's name: IPython completes that
    fragment = "" if text[-1:].isspace() else words.pop()
    if "--" in words:
        return fragment, []
    takes_value = _value_options(parser)
    previous = words[-1] if words else ""
    if previous in takes_value:
        names = sandbox_names(words) if previous in _SANDBOX_OPTIONS else []
        return fragment, _matching(names, fragment)
    if fragment.startswith("-"):
        options = [option for action in parser._actions for option in action.option_strings]
        return fragment, _matching(options, fragment)
    positionals = [action for action in parser._actions if not action.option_strings]
    if positionals and positionals[0].dest == "name" and set(words) & set(_SANDBOX_OPTIONS):
        positionals.pop(0)  # -s named the sandbox: argparse leaves the optional NAME empty
    index = _positional_index(words, takes_value)
    if index >= len(positionals) or positionals[index].dest != "name" or magic in _NEW_NAME:
        return fragment, []
    source = attachable_names if magic in _ATTACHABLE else sandbox_names
    return fragment, _matching(source(words), fragment)


def _matching(candidates: Iterable[str], fragment: str) -> list[str]:
    """The candidates starting with ``fragment``, each once, in their order."""
    return list(dict.fromkeys(c for c in candidates if c.startswith(fragment)))


def _option_value(words: list[str], *options: str) -> str | None:
    """The value given to the last of ``options`` in ``words`` (None: not given)."""
    value = None
    for flag, following in itertools.pairwise(words):
        if flag in options:
            value = following
    return value


def _within(seconds: float, call: Callable[..., list[Any]], *args: Any) -> list[Any]:
    """``call(*args)``, or ``[]`` when it fails or takes longer than ``seconds``: a cluster
    that does not answer must not freeze the editor. A late call goes on in its daemon
    thread and its answer is dropped."""
    answer: list[list[Any]] = []

    def work() -> None:
        with contextlib.suppress(Exception):  # completion offers nothing instead
            answer.append(call(*args))

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(seconds)
    return answer[0] if answer else []


def sandbox_matcher(magics: Any) -> Callable[[CompletionContext], SimpleMatcherResult]:
    """An IPython (Matcher API v2) matcher completing ``magics``' lines.

    Suppresses the other matchers when it has candidates (a file name is never an option),
    and never raises: a registry or a cluster that fails while listing gives none.
    """
    parsers = magic_parsers(magics)

    def registered(words: list[str]) -> list[str]:
        del words
        return magics.registry.names()

    def attachable(words: list[str]) -> list[str]:
        from ..backends import backend_class

        config = magics.sandbox_config(
            namespace=_option_value(words, "-n", "--namespace"),
            execution_backend=_option_value(words, "--backend"))
        listing = backend_class(config.execution_backend).list_sandboxes
        return [status.name for status in _within(LIST_TIMEOUT, listing, config)]

    @context_matcher()
    def match_sandbox_magic(context: CompletionContext) -> SimpleMatcherResult:
        try:
            fragment, names = complete_line(
                context.text_until_cursor, parsers,
                sandbox_names=registered, attachable_names=attachable)
        except Exception:
            fragment, names = "", []
        return SimpleMatcherResult(
            completions=[SimpleCompletion(name, type="option" if name[:1] == "-" else "sandbox")
                         for name in names],
            matched_fragment=fragment, suppress=bool(names))

    return match_sandbox_magic
