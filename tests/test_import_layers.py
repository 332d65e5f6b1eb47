"""The backend's layers, read from the source: preview choice sits in ``editing`` above ``search``, and
inference code measures images with ``anycost.measures``, never with ``training``.

Imports are read with ``ast``, so a cycle that only works thanks to an import tucked into a function
(or an import order) is caught here rather than by whoever imports the modules the other way round.
"""

from __future__ import annotations

import ast
from pathlib import Path

import anycost

PACKAGE = Path(anycost.__file__).resolve().parent
INFERENCE = ("editing", "search", "measures", "models", "service")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, *, module_level: bool) -> set[str]:
    """The ``anycost`` modules ``name`` imports: at module level (class bodies and ``if`` blocks
    included, since they run on import), or anywhere in the file."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    nodes: list[ast.AST] = list(tree.body)
    found: set[str] = set()
    while nodes:
        node = nodes.pop()
        if module_level and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from . import warp`: a submodule
        nodes.extend(ast.iter_child_nodes(node))
    return {m for m in found if m in MODULES and m != name}


def _graph(*, module_level: bool) -> dict[str, set[str]]:
    return {name: _imports(name, module_level=module_level) for name in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _in(name: str, *subpackages: str) -> bool:
    return any(name == f"anycost.{s}" or name.startswith(f"anycost.{s}.") for s in subpackages)


def test_the_reader_sees_the_imports_this_test_relies_on():
    """The graph is not vacuous: known edges of each kind are found, relative and absolute."""
    graph = _graph(module_level=True)
    assert "anycost.search.budget" in graph["anycost.editing.preview_choice"]  # from ..search.budget import
    assert "anycost.editing.render" in graph["anycost.editing.preview_choice"]  # from .render import
    assert "anycost.editing.warp" in graph["anycost.editing.paste"]  # from . import warp
    assert "anycost.measures.perceptual" in graph["anycost.search.consistency"]
    anywhere = _graph(module_level=False)
    assert "anycost.training.discriminator" in anywhere["anycost.io.checkpoint"]  # inside a function
    assert "anycost.training.discriminator" not in graph["anycost.io.checkpoint"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_runs_through_editing_or_search():
    cycles = [c for c in _cycles(_graph(module_level=True)) if any(_in(m, "editing", "search") for m in c)]
    assert cycles == []


def test_search_never_imports_editing_not_even_inside_a_function():
    """Choosing the preview (editing.preview_choice) uses the search; the search never uses editing,
    so no import has to hide inside a function to dodge a cycle."""
    graph = _graph(module_level=False)
    wrong = {m: sorted(t for t in graph[m] if _in(t, "editing")) for m in graph if _in(m, "search")}
    assert {m: t for m, t in wrong.items() if t} == {}


def test_inference_code_does_not_depend_on_training():
    graph = _graph(module_level=False)
    wrong = {m: sorted(t for t in graph[m] if _in(t, "training")) for m in graph if _in(m, *INFERENCE)}
    assert {m: t for m, t in wrong.items() if t} == {}
