"""The package's folders are its layers, and imports only go down them (read from the source, nothing imported):
base (errors, registry, threads, chunks) → core → solve → analysis → app → repro. Module-level and function-level
imports count alike; no module imports another of a higher layer, and the import graph has no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "hopbench"
LAYERS = {"core": 1, "solve": 2, "analysis": 3, "app": 4, "repro": 5}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return 6  # the package's root re-exports the API: nothing inside may import it
    return LAYERS.get(parts[1], 0)


def imports(path: Path) -> set[str]:
    """Modules of this package imported by ``path`` (``from hopbench.x import y`` counts hopbench.x.y when y is a
    module)."""
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    own = module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "hopbench"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                kept = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*kept, *([base] if base else [])])
            if base.split(".")[0] != "hopbench":
                continue
            subs = {f"{base}.{a.name}" for a in node.names} & modules
            found |= subs or {base}
    return found - {own}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def test_imports_only_go_down_the_layers() -> None:
    upward = sorted(f"{m} ({layer(m)}) imports {i} ({layer(i)})" for m, deps in graph().items() for i in deps
                    if layer(i) > layer(m))
    assert upward == []


def test_no_import_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycle.extend([*path[path.index(nxt):], nxt] if nxt in path else [node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, [*path, nxt]):
                return True
        state[node] = 2
        return False

    for start in sorted(edges):
        if state.get(start) is None and visit(start, [start]):
            break
    assert cycle == []


def test_every_folder_is_a_layer() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(LAYERS)
