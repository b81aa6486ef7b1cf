"""How pytest runs the tutorials (nbmake, see ``addopts`` in pyproject.toml).

A tutorial's first cell calls ``ensure_cluster``, which finds a cluster as kubectl does and
starts a devcluster only when none is configured. The suite's own cluster setting,
``SANDBOXKIT_TEST_KUBECONFIG`` (kind in CI), is handed to the kernels as ``KUBECONFIG`` so
that the tutorials run where the integration tests run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``-m notebooks`` selects the tutorials (and ``-m unit`` or ``-m integration`` not)."""
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.notebooks)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    external = os.environ.get("SANDBOXKIT_TEST_KUBECONFIG")
    if not external:
        return (yield)
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = external
    try:
        return (yield)
    finally:
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous
