"""The layers of the package (README, Architecture) hold: no import points up, and no cycle.

Every ``import collabkit.X`` counts, including imports inside functions: a lazy import that
points up, or closes a circle, is the same dependency hidden.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import collabkit

#: the pipeline, bottom to top: a module may import its own layer and the ones before it
LAYERS = (
    "files", "data", "core", "models", "checkpoint", "train", "recommend", "evaluate", "interpret",
    "simulate", "serve", "cli",
)  # fmt: skip
ROOT = Path(collabkit.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """module -> the collabkit modules it imports (anywhere in its body)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        name = module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # `from package import submodule` imports the submodule
                targets = [
                    f"{node.module}.{a.name}" if _is_module(f"{node.module}.{a.name}") else node.module
                    for a in node.names
                ]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t.startswith("collabkit.") and t != name}
    return graph


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (ROOT / rel).with_suffix(".py").exists() or (ROOT / rel / "__init__.py").exists()


def layer(module: str) -> str:
    return module.split(".")[1]


def test_every_package_has_a_layer():
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    assert packages | modules <= set(LAYERS), sorted((packages | modules) - set(LAYERS))


def test_no_import_points_up():
    up = [
        f"{mod} imports {target}"
        for mod, targets in imports().items()
        if mod != "collabkit"  # the top-level package re-exports the public names
        for target in targets
        if LAYERS.index(layer(target)) > LAYERS.index(layer(mod))
    ]
    assert not up, "\n".join(sorted(up))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A path that comes back to where it started, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, node])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [])):
            return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle():
    graph = imports()
    graph.pop("collabkit", None)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_models_never_probe_with_hasattr():
    """Capabilities are declared (models.base.require/supports), not probed."""
    offenders = [
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("*.py")
        if "hasattr(model" in p.read_text() or "hasattr(net" in p.read_text()
    ]
    assert not offenders
