"""The layout a forker relies on: their files on top, the engine underneath, nothing importing
upward and no import cycle; and the two files they edit stay short."""

import ast

from conftest import ROOT

SRC = ROOT / "src" / "litforge"
# lower levels never import higher ones; the forker's files (models, data, tables) sit between
# the engine and run packages below and the entry points above
LEVELS = {
    "litforge.errors": 0,
    "litforge.rules": 0,
    "litforge.engine": 1,
    "litforge.run": 2,
    "litforge.tables": 3,
    "litforge.models": 3,
    "litforge.data": 3,
}
ENTRY = 4  # build, checks, train, eval, summary


def module_name(path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def level(name: str) -> int:
    for prefix, value in LEVELS.items():
        if name == prefix or name.startswith(prefix + "."):
            return value
    return ENTRY


def imports() -> dict[str, set[str]]:
    """Every litforge module and the litforge modules it imports, anywhere in its code."""
    found = {}
    for path in SRC.rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
        known = {module_name(p) for p in SRC.rglob("*.py")}
        found[module_name(path)] = {n for n in names if n in known} - {module_name(path)}
    return found


def test_nothing_imports_upward():
    upward = [
        f"{module} imports {other}"
        for module, others in imports().items()
        for other in others
        if level(other) > level(module)
    ]
    assert upward == []


def test_the_engine_never_imports_the_forkers_files():
    assert [
        (module, other)
        for module, others in imports().items()
        if module.startswith("litforge.engine")
        for other in others
        if other.startswith(("litforge.models", "litforge.data", "litforge.tables"))
    ] == []


def test_there_is_no_import_cycle():
    graph = imports()
    # a package's __init__ re-exporting its own modules is not a cycle of the layout
    graph = {m: {o for o in others if not m.startswith(o + ".")} for m, others in graph.items()}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> list[str]:
        state[module] = 1
        for other in sorted(graph.get(module, ())):
            if state.get(other) == 1:
                return [*path, module, other]
            if other not in state and (cycle := visit(other, [*path, module])):
                return cycle
        state[module] = 2
        return []

    cycles = [visit(module, []) for module in sorted(graph) if module not in state]
    assert [c for c in cycles if c] == []


def test_the_files_a_forker_edits_are_short():
    for name in ("models.py", "data.py"):
        assert len((SRC / name).read_text().splitlines()) < 200, name
