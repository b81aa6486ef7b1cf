"""environment.yml (conda) stays in step with pyproject.toml (pip).

Every dependency pyproject.toml lists -- runtime and every extra -- must appear in
environment.yml under its conda-forge name with the same version bound, so a conda user
gets what pip users get (and the pip line, which installs the package itself, resolves
nothing new). Names that differ between PyPI and conda-forge are mapped explicitly below.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]

# PyPI name -> conda-forge name, where they differ (after PEP 503 normalisation).
CONDA_NAMES = {
    "docker": "docker-py",  # conda-forge's "docker" is the Docker CLI, not the SDK
    "pyseccomp": "seccomp",  # libseccomp's own bindings, whose API pyseccomp copies
}
# What the issue asks environment.yml to carry beyond pyproject's dependencies.
REQUIRED = {"python", "kubernetes", "ipywidgets", "jupyterlab", "pandas", "nbmake", "kind",
            "kubernetes-client", "pip"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        listed += extra
    requirements = [Requirement(text) for text in listed]
    return [req for req in requirements if _normalise(req.name) != _normalise(project["name"])]


def _environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _conda_specs() -> dict[str, str]:
    """conda-forge name -> version spec ("" when unbounded), from the dependencies list."""
    specs = {}
    for entry in _environment()["dependencies"]:
        if isinstance(entry, str):
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", entry.strip())
            assert match, entry
            specs[_normalise(match.group(1))] = match.group(2).strip()
    return specs


def test_every_pyproject_dependency_has_a_conda_counterpart_with_its_bound() -> None:
    conda = _conda_specs()
    missing, drifted = [], []
    for req in _pyproject_requirements():
        name = _normalise(CONDA_NAMES.get(_normalise(req.name), req.name))
        if name not in conda:
            missing.append(f"{req.name} (conda-forge: {name})")
        elif SpecifierSet(conda[name]) != req.specifier:
            drifted.append(f"{req.name}: pyproject {req.specifier}, environment.yml "
                           f"{conda[name] or 'unbounded'}")
    assert not missing, f"add to environment.yml (or map in CONDA_NAMES): {missing}"
    assert not drifted, f"version bounds differ: {drifted}"


def test_issue_requirements_channel_and_pip_install() -> None:
    environment = _environment()
    assert environment["channels"] == ["conda-forge"]
    conda = _conda_specs()
    assert set(conda) >= REQUIRED, REQUIRED - set(conda)
    pip = [entry["pip"] for entry in environment["dependencies"] if isinstance(entry, dict)]
    assert pip == [["-e .[dev]"]]


def test_python_version_satisfies_requires_python() -> None:
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    pinned = _conda_specs()["python"]
    assert pinned.startswith("="), pinned
    assert Version(pinned.lstrip("=")) in SpecifierSet(requires)


@pytest.mark.parametrize("mapped", sorted(CONDA_NAMES))
def test_every_mapping_is_still_needed(mapped: str) -> None:
    """A mapping for a package pyproject no longer lists is stale: drop it."""
    assert mapped in {_normalise(req.name) for req in _pyproject_requirements()}
