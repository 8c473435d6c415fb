"""The package's imports flow one way: no cycle between its packages, no import of another package's private
module, no function-level import of the project's own modules (those are for heavy or optional libraries)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import transferkit

ROOT = Path(transferkit.__file__).parent
ENTRY = {"__init__", "__main__", "cli"}  # the public surface and the command: they may import anything


def _imports():
    """(file, line, importer unit, imported module parts, inside a function) for every relative import."""
    for f in sorted(ROOT.rglob("*.py")):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        package = parts[-1] == "__init__"
        if package:
            parts = parts[:-1]
        unit = parts[0] if parts else "__init__"
        tree = ast.parse(f.read_text(encoding="utf-8"))
        inner = {id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for n in ast.walk(fn)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = parts[: len(parts) - node.level + (1 if package else 0)]
                targets = [base + node.module.split(".")] if node.module else [base + [a.name] for a in node.names]
                for t in targets:
                    yield f.relative_to(ROOT), node.lineno, unit, t, id(node) in inner


def test_no_cycle_between_packages():
    edges = defaultdict(set)
    for _, _, unit, target, _ in _imports():
        if target and target[0] != unit and unit not in ENTRY:
            edges[unit].add(target[0])

    def reaches(start, goal, seen):
        return any(n == goal or (n not in seen and not seen.add(n) and reaches(n, goal, seen)) for n in edges[start])

    cycles = sorted(u for u in list(edges) if reaches(u, u, set()))
    assert not cycles, f"packages in an import cycle: {cycles}"


def test_no_import_of_another_packages_private_module():
    bad = [f"{f}:{line} imports {'.'.join(t)}" for f, line, unit, t, _ in _imports()
           if t and t[0] != unit and (ROOT / t[0]).is_dir() and any(p.startswith("_") for p in t[1:])]
    assert not bad, "\n".join(bad)


def test_the_projects_own_modules_are_imported_at_module_level():
    bad = [f"{f}:{line} imports {'.'.join(t)} inside a function" for f, line, _, t, inner in _imports() if inner]
    assert not bad, "\n".join(bad)
