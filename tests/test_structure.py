"""The shape of the house: data flows one way through the modules, so the import graph of src/hardneg has no
cycle, even counting the imports made inside functions (a module loaded lazily because it pulls in a heavy library
is fine; one imported late to dodge a cycle is not); no source file outgrows one job."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "hardneg"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(node: ast.ImportFrom | ast.Import, importer: str, is_package: bool) -> list[str]:
    """The hardneg modules an import statement names (a name imported from a package may be a submodule)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "hardneg"]
    if node.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != "hardneg":
        return []
    found = [target]
    found += [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
    return [m for m in found if m in MODULES]


def imports_of(name: str, path: Path) -> tuple[set[str], list[str]]:
    """(modules imported at module level, 'line: module' of hardneg imports inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    top: set[str] = set()
    nested: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        targets = resolve(node, name, is_package)
        if node.col_offset == 0:
            top.update(targets)
        elif targets:
            nested.append(f"{path.relative_to(SRC)}:{node.lineno}: {', '.join(targets)}")
    return top, nested


def graph(nested: bool = False) -> dict[str, set[str]]:
    # An import of a package's own submodule by the package (its __init__ re-exporting) is not a dependency cycle
    # with that submodule importing a sibling through the package's __init__; edges into a parent package are
    # therefore dropped (Python loads parents first anyway).
    out = {}
    for name, path in MODULES.items():
        top, inside = imports_of(name, path)
        if nested:
            top |= {m.strip() for line in inside for m in line.split(": ", 1)[1].split(",")}
        out[name] = {m for m in top if m != name and not name.startswith(m + ".")}
    return out


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_inside_a_function_dodges_a_cycle():
    cycle = find_cycle(graph(nested=True))
    nested = [line for name, path in MODULES.items() for line in imports_of(name, path)[1]]
    assert cycle is None, ("moving the imports made inside functions to the top would make the cycle "
                           + " -> ".join(cycle) + "; they are:\n" + "\n".join(nested))


def test_no_source_file_over_the_limit():
    long = {str(p.relative_to(SRC)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines (split them by job): {long}"
