"""Sync's pure parts: the sandbox manifest's parsing, exclude matching, diff rendering.

The manifest parser is fed what the manifest script prints (GNU and busybox alike); a
misaligned manifest must raise, so that sync falls back to sending everything rather than
skipping a changed file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandboxkit.backends.sync import (
    Diff,
    Entry,
    excluded,
    local_manifest,
    parse_manifest,
    parse_summary,
)

SHA_A = "a" * 64
SHA_B = "b" * 64


def test_parse_manifest_of_files_and_links() -> None:
    data = (b"./x.py\0./sub/b.bin\0\0" b"644 4\n755 256\n\0"
            + f"{SHA_A}  ./x.py\n{SHA_B}  ./sub/b.bin\n".encode() + b"\0"
            + b"./link\0x.py\0")
    assert parse_manifest(data) == {
        "x.py": Entry("f", 4, 0o644, SHA_A),
        "sub/b.bin": Entry("f", 256, 0o755, SHA_B),
        "link": Entry("l", 4, 0, "x.py"),
    }


def test_parse_manifest_of_a_missing_or_empty_directory() -> None:
    assert parse_manifest(b"") == {}
    assert parse_manifest(b"\0\0\0") == {}
    assert parse_manifest(b"\0\0\0./l\0t\0") == {"l": Entry("l", 1, 0, "t")}


def test_parse_manifest_reads_gnu_escaped_names() -> None:
    # GNU sha256sum prefixes a line whose name it escaped (a newline in it) with "\"
    data = b"./a\nb\0\0" b"644 1\n\0" + f"\\{SHA_A}  ./a\\nb\n".encode() + b"\0"
    assert parse_manifest(data) == {"a\nb": Entry("f", 1, 0o644, SHA_A)}


def test_a_misaligned_manifest_raises() -> None:
    data = b"./a\nb\0\0" b"644 1\n\0" + f"{SHA_A}  ./a\nb\n".encode() + b"\0"
    with pytest.raises(ValueError):
        parse_manifest(data)


@pytest.mark.parametrize(("path", "patterns", "is_dir", "expected"), [
    ("a.pyc", ["*.pyc"], False, True),
    ("pkg/a.pyc", ["*.pyc"], False, True),
    ("pkg/a.py", ["*.pyc"], False, False),
    ("pkg/__pycache__/a.cpython.pyc", ["__pycache__"], False, True),
    ("build", ["build/"], True, True),
    ("build", ["build/"], False, False),  # a file named build: trailing / means directories
    ("build/out.o", ["build/"], False, True),
    ("docs/a.md", ["docs/*.md"], False, True),
    ("src/docs/a.md", ["docs/*.md"], False, False),  # anchored at the root
    ("docs/x/a.md", ["/docs/**"], False, True),
    ("keep.txt", [], False, False),
])
def test_exclude_matching(path: str, patterns: list[str], is_dir: bool,
                          expected: bool) -> None:
    assert excluded(path, patterns, is_dir) is expected


def test_local_manifest_keeps_modes_links_and_skips_excluded(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_bytes(b"#!/bin/sh\n")
    os.chmod(tmp_path / "run.sh", 0o750)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "x").write_text("x")
    os.symlink("run.sh", tmp_path / "link")
    os.symlink("cache", tmp_path / "dirlink")
    manifest = local_manifest(tmp_path, ["cache/"])
    assert set(manifest) == {"run.sh", "link", "dirlink"}
    assert manifest["run.sh"].mode == 0o750 and manifest["run.sh"].kind == "f"
    assert manifest["link"] == Entry("l", 6, 0, "run.sh")


DIFF = """diff --git a/calc.py b/calc.py
--- a/calc.py
+++ b/calc.py
@@ -1,2 +1,2 @@
 def mean(values):
-    return sum(values) / (len(values) + 1)
+    return sum(values) / len(values)
untracked: notes <b>.txt
"""


def test_summary_counts_files_and_lines() -> None:
    summary, untracked = parse_summary(DIFF)
    assert (summary.files, summary.added, summary.removed) == (2, 1, 1)
    assert untracked == ("notes <b>.txt",)
    assert str(summary) == "2 files changed, +1 -1"


def test_html_colours_lines_and_escapes() -> None:
    rendered = Diff.from_text(DIFF, "/w<s>")._repr_html_()
    assert "notes &lt;b&gt;.txt" in rendered and "/w&lt;s&gt;" in rendered
    assert "#1a7f37" in rendered and "#cf222e" in rendered
    assert str(Diff.from_text(DIFF)).endswith("2 files changed, +1 -1")


TAG = re.compile(r"<(/?)(div|pre|span|b)( style=\"[^\"<>]*\"| class=\"[^\"<>]*\")?>")


@given(st.text())
def test_any_text_renders_without_an_unescaped_angle_bracket(text: str) -> None:
    rendered = TAG.sub("", Diff.from_text(text, text)._repr_html_())
    assert "<" not in rendered and ">" not in rendered


def test_a_changed_binary_file_counts_once() -> None:
    text = "Binary files a/x.bin and b/x.bin differ\n" + DIFF
    assert parse_summary(text)[0].files == 3
    git = "diff --git a/x.bin b/x.bin\nindex 1..2 100644\nBinary files a/x.bin and b/x.bin differ\n"
    assert parse_summary(git)[0].files == 1
