"""The import rules of the design: lower layers never import upper ones.

Every ``import`` and ``from ... import`` in the package (TYPE_CHECKING blocks and function
bodies included: a lazy import is still a dependency) is resolved to the module it names and
mapped to its layer; each layer may import only the layers listed for it below. A rule
broken here is a module that reaches upward, which the design forbids so that, say, the
widgets can be fed by any status source and the CLI never pulls in IPython.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sandboxkit"

FOUNDATION = {"errors", "models", "config", "metrics"}
# layer -> the layers it may import (its own layer always may)
ALLOWED: dict[str, set[str]] = {
    "errors": {"models"},  # for annotations only (CommandFailed carries a CommandResult)
    "models": {"errors"},
    "config": {"errors", "models"},
    "metrics": {"errors"},
    "manifests": FOUNDATION,
    "backends": FOUNDATION | {"manifests"},
    "rbac": FOUNDATION | {"manifests", "backends"},
    "inventory": FOUNDATION | {"manifests", "backends"},
    "diagnostics": FOUNDATION | {"manifests", "backends", "rbac"},
    "feed": FOUNDATION | {"manifests", "backends"},
    "widgets": {"models", "errors"},
    # the status sources panels are fed with: where feeds, backends and diagnose meet
    "sources": FOUNDATION | {"manifests", "backends", "feed", "diagnostics", "widgets"},
    "factory": FOUNDATION | {"backends"},
    # warm pools: fill and drain with the backend's lifecycle; claims are the backend's own
    # (SandboxConfig.pool), so factory and magics reach a pool without importing this layer
    "pool": FOUNDATION | {"manifests", "backends"},
    "fallback": FOUNDATION | {"backends", "devcluster"},
    "devcluster": set(),  # standalone: product code never special-cases it, nor it them
    "demo": FOUNDATION | {"manifests", "backends", "rbac", "diagnostics", "inventory",
                          "feed", "factory", "fallback"},
    "lab": FOUNDATION | {"fallback"},
    "magics": FOUNDATION | {"manifests", "backends", "rbac", "diagnostics", "inventory",
                            "feed", "factory", "widgets", "sources"},
    "cli": FOUNDATION | {"manifests", "backends", "rbac", "diagnostics", "inventory",
                         "factory", "fallback", "demo", "lab", "devcluster", "pool"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
    relative = Path(*dotted.split("."))
    return ((PACKAGE.parent / relative).with_suffix(".py").is_file()
            or (PACKAGE.parent / relative / "__init__.py").is_file())


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every package module ``path`` imports."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:  # `from .. import metrics` imports a module
                candidate = f"{source}.{alias.name}"
                found.append((node.lineno, candidate if _is_module(candidate) else source))
    return [(line, module) for line, module in found
            if module == "sandboxkit" or module.startswith("sandboxkit.")]


def layer(module: str) -> str:
    """``sandboxkit.backends.kubernetes.exec`` -> ``backends``; the package itself -> ""."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_layer_of_the_package_is_known() -> None:
    layers = {layer(_module_name(path)) for path in PACKAGE.rglob("*.py")} - {""}
    assert layers == set(ALLOWED), "give new layers their rules in ALLOWED"


# sandboxkit/__init__.py is the public surface and may name anything.
@pytest.mark.parametrize("path", sorted(set(PACKAGE.rglob("*.py")) - {PACKAGE / "__init__.py"}),
                         ids=lambda path: str(path.relative_to(PACKAGE)))
def test_module_imports_only_lower_layers(path: Path) -> None:
    source_layer = layer(_module_name(path))
    broken = [f"line {line}: {module}" for line, module in _imports(path)
              if layer(module) not in ALLOWED[source_layer] | {source_layer}]
    assert not broken, f"{source_layer} may import only {sorted(ALLOWED[source_layer])}: {broken}"


def test_the_checker_sees_relative_and_lazy_imports() -> None:
    """The parser resolves what the package's modules write, or the rules hold nothing."""
    base = {module for _, module in _imports(PACKAGE / "backends" / "base.py")}
    assert "sandboxkit.metrics" in base  # `from .. import metrics`
    assert "sandboxkit.models" in base  # `from ..models import CommandResult`
    magics = {module for _, module in _imports(PACKAGE / "magics" / "core.py")}
    assert "sandboxkit.inventory" in magics  # imported inside a function
