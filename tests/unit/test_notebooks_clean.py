"""The tutorial notebooks as committed: valid, outputs stripped, failures declared.

Outputs in git would leak cluster addresses, names and timings into diffs, and go stale the
moment the code changes; nbmake re-runs the notebooks instead. A cell that fails on purpose
says so in a ``# fails on purpose: ...`` comment for the reader and carries the
``raises-exception`` tag for nbmake; the two must agree, or a broken cell would pass
silently (tag without intent) or a demonstration would fail the run (intent without tag).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))
FAILS_MARK = "# fails on purpose:"
FAIL_TAG = "raises-exception"
# nbclient and nbmake act on these; anything else is a typo that would be ignored.
KNOWN_TAGS = {FAIL_TAG, "skip-execution"}
CLUSTER_CELL = "from sandboxkit import ensure_cluster"


def test_the_four_tutorials_are_there() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01-rbac-setup.ipynb", "02-execution.ipynb", "03-troubleshooting.ipynb",
        "04-debugging-a-fix.ipynb"]


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.name)
def notebook(request: pytest.FixtureRequest) -> nbformat.NotebookNode:
    nb = nbformat.read(request.param, as_version=4)
    nbformat.validate(nb)
    return nb


def _code(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_outputs_and_execution_counts_are_stripped(notebook: nbformat.NotebookNode) -> None:
    dirty = [cell.id for cell in _code(notebook) if cell.outputs or cell.execution_count]
    assert not dirty, f"cells with outputs: {dirty} (clear them before committing)"
    assert not notebook.metadata.get("widgets"), "widget state is an output too"


def test_runs_on_the_venv_kernel(notebook: nbformat.NotebookNode) -> None:
    # nbmake starts the kernel named here; python3 is the one of the interpreter running it.
    assert notebook.metadata["kernelspec"]["name"] == "python3"


def test_failing_cells_are_declared_and_tagged(notebook: nbformat.NotebookNode) -> None:
    for cell in notebook.cells:
        tags = set(cell.metadata.get("tags", []))
        assert tags <= KNOWN_TAGS, f"cell {cell.id}: unknown tags {tags - KNOWN_TAGS}"
        if cell.cell_type != "code":
            assert not tags, f"markdown cell {cell.id} is tagged {tags}"
            continue
        declared = FAILS_MARK in cell.source
        assert declared == (FAIL_TAG in tags), (
            f"cell {cell.id}: a {FAILS_MARK!r} comment and the {FAIL_TAG!r} tag go together")
    assert any(FAIL_TAG in c.metadata.get("tags", []) for c in notebook.cells), (
        "each tutorial shows at least one failure")


def test_first_code_cell_finds_a_cluster_and_the_last_closes_it(
    notebook: nbformat.NotebookNode,
) -> None:
    code = _code(notebook)
    assert CLUSTER_CELL in code[0].source
    assert "cluster = ensure_cluster()" in code[0].source
    assert code[-1].source.rstrip().endswith("cluster.close()")
