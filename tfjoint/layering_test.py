"""The package's architecture, read from its own imports: layers, no cycles, no private imports.

Layers, bottom to top (a module may import only from lower layers, or from its own package):

0. ``tfjoint``, ``tfjoint.registry`` (a leaf), ``tfjoint.features`` (specs, catalog, schema)
1. ``tfjoint.datasets``, ``tfjoint.layers.core``
2. the families ``tfjoint.layers.multi_task``, ``tfjoint.balancing``, ``tfjoint.modality`` (item
   text encoders, dense modality vectors) and
   ``tfjoint.layers.retrieval`` (top-K models over :mod:`tfjoint.features.interactions`)
3. the families ``tfjoint.layers.multi_scenario`` (which may compose multi-task layers),
   ``tfjoint.layers.multi_behavior``, ``tfjoint.layers.multi_modal``
4. ``tfjoint.layers`` (the package) and ``tfjoint.catalog`` (imports every family)
5. ``tfjoint.joint`` (the joint model), ``tfjoint.retrieval`` (top-K splits, protocols, metrics)
6. ``tfjoint.testing``
7. ``tfjoint.pipeline``, ``tfjoint.serving``, ``tfjoint.bench`` (siblings: they may import
   each other, without cycles)
8. the command lines: ``tfjoint.cli`` and every ``*.cli`` module (they may import each other)
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent

LAYERS = [  # (module prefix, layer); the longest matching prefix wins
    ("tfjoint", 0),
    ("tfjoint.registry", 0),
    ("tfjoint.features", 0),
    ("tfjoint.datasets", 1),
    ("tfjoint.layers.core", 1),
    ("tfjoint.layers.multi_task", 2),
    ("tfjoint.balancing", 2),
    ("tfjoint.modality", 2),
    ("tfjoint.layers.retrieval", 2),
    ("tfjoint.layers.multi_scenario", 3),
    ("tfjoint.layers.multi_behavior", 3),
    ("tfjoint.layers.multi_modal", 3),
    ("tfjoint.layers", 4),
    ("tfjoint.catalog", 4),
    ("tfjoint.joint", 5),
    ("tfjoint.retrieval", 5),
    ("tfjoint.testing", 6),
    ("tfjoint.pipeline", 7),
    ("tfjoint.serving", 7),
    ("tfjoint.bench", 7),
    ("tfjoint.cli", 8),
]
SIBLINGS = {"tfjoint.pipeline", "tfjoint.serving", "tfjoint.bench"}


def _modules() -> dict[str, pathlib.Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        if path.name.endswith("_test.py") or path.name == "conftest.py":
            continue
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _group(module: str) -> tuple[str, int]:
    """``(prefix, layer)`` of ``module``; ``*.cli`` modules are command lines."""
    if module.endswith(".cli"):
        return module, 8
    prefix = max((p for p, _ in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return prefix, dict(LAYERS)[prefix]


def _imports(module: str) -> list[tuple[str, str | None, int]]:
    """``(imported module, imported name or None, line)`` of every tfjoint import in ``module``."""
    path = MODULES[module]
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".") if is_package else module.split(".")[:-1]
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.append((full if full in MODULES else base, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            out.extend((alias.name, None, node.lineno) for alias in node.names)
    resolved = []
    for target, name, line in out:
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target and target != module:
            resolved.append((target, name, line))
    return resolved


def test_the_package_is_found():
    assert {"tfjoint.registry", "tfjoint.catalog", "tfjoint.joint.model", "tfjoint.layers.core.scenarios"} <= set(
        MODULES
    )
    for family in ("multi_task", "multi_scenario", "multi_behavior", "multi_modal", "retrieval"):
        assert f"tfjoint.layers.{family}" in MODULES


def layer_violations() -> list[str]:
    bad = []
    for module in MODULES:
        own, own_layer = _group(module)
        for target, _, line in _imports(module):
            if target == "tfjoint" and not module.startswith("tfjoint."):
                continue
            other, other_layer = _group(target)
            same_package = other == own or (own in SIBLINGS and other in SIBLINGS) or own_layer == other_layer == 8
            if target == "tfjoint" or other_layer < own_layer or same_package:
                continue
            bad.append(f"{module}:{line} imports {target} (layer {other_layer} >= {own_layer})")
    return bad


def test_no_module_imports_from_its_own_or_a_higher_layer():
    assert layer_violations() == []


def test_no_module_imports_a_private_name_of_another_module():
    bad = [
        f"{module}:{line} imports {target}.{name}"
        for module in MODULES
        for target, name, line in _imports(module)
        if name and name.startswith("_") and not name.startswith("__")
    ]
    assert bad == []


def test_no_import_cycles():
    graph = {m: {t for t, _, _ in _imports(m)} for m in MODULES}
    # A package importing its own modules from __init__ is how it exports, not a cycle.
    for m in graph:
        graph[m] = {t for t in graph[m] if not t.startswith(m + ".")}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


@pytest.mark.parametrize(
    "module, target",
    [("tfjoint.layers.core.mlp", "tfjoint.joint.model"), ("tfjoint.layers.multi_modal.gating_fusion", "tfjoint.layers.multi_scenario.star_topology_fully_connected")],
)
def test_the_check_catches_an_upward_import(module, target, monkeypatch):
    """The rule itself: a core layer importing the joint model, or one family importing a
    peer family it may not, is reported."""
    original = _imports

    def with_extra(m: str) -> list:
        return original(m) + ([(target, None, 1)] if m == module else [])

    monkeypatch.setitem(globals(), "_imports", with_extra)
    assert any(v.startswith(f"{module}:1 imports {target}") for v in layer_violations())
