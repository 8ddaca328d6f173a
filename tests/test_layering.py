"""The library imports downward only: no import circle, training never imports evaluation, the decoding core
imports no data set, and nothing in the library imports the research packages beside it."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "transformers_taro"
CORE = {f"transformers_taro.{m}" for m in ("guide", "processor", "fused", "router", "mixing", "features", "prompts")}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Each library module and the library modules it imports (at any depth of the file: lazy imports and those for
    type annotations only too)."""
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # Imports under `if TYPE_CHECKING:` count too: a circle for the type checker is a circle in the design.
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    target = f"{base}.{node.module}" if node.module else base
                else:
                    target = node.module or ""
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = found
    modules = set(graph)
    return {name: {t for t in targets if t in modules and t != name} for name, targets in graph.items()}


def test_the_import_graph_has_no_circle():
    graph = imports()
    # Importing a package runs its __init__, which imports its modules: edges to a package count as edges to it.
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join([*path, node, nxt]))
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_training_does_not_import_evaluation():
    for name, targets in imports().items():
        if name.startswith("transformers_taro.training"):
            assert not [t for t in targets if t.startswith("transformers_taro.evaluation")], name


def test_the_decoding_core_imports_no_data_set():
    for name, targets in imports().items():
        if name in CORE:
            assert not [t for t in targets if t.startswith(("transformers_taro.data", "transformers_taro.tasks"))], name


def test_the_library_does_not_import_research_code():
    for path in SRC.rglob("*.py"):
        assert "taro_miniworld" not in path.read_text(encoding="utf-8"), path
