"""The shape of the code, counted from its syntax tree (no import): how wide the plug-in contracts are and how long the
central functions, for comparing two trees (``python bench/code_shape.py SRC [SRC …]``, each a ``src/transferkit``).

- members of the Task base class, and how many of them each registered task class overrides;
- the longest functions, and ``train_loop`` / ``create_app`` by name (lines, parameters);
- string comparisons on adaptation method names outside a method's own class;
- assignments into a run config (``cfg.x = …``, ``setattr(cfg, …)``, ``cfg.extra[…] = …``) by module.
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path

METHOD_NAMES = {"none", "auto", "coral", "sa", "ot", "adabn", "dann", "cdan", "mcc", "self-train"}


def _classes(root: Path) -> dict[str, tuple[ast.ClassDef, Path]]:
    out = {}
    for f in root.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ClassDef):
                out.setdefault(node.name, (node, f))
    return out


def _members(cls: ast.ClassDef) -> set[str]:
    names = set()
    for n in cls.body:
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(n.name)
        elif isinstance(n, ast.Assign):
            names |= {t.id for t in n.targets if isinstance(t, ast.Name)}
        elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
            names.add(n.target.id)
    return names


def shape(root: Path) -> dict:
    classes = _classes(root)
    task = _members(classes["Task"][0])
    overrides = {}
    for name, (cls, _) in classes.items():
        if any(isinstance(b, ast.Name) and b.id == "Task" for b in cls.bases):
            overrides[name] = len(_members(cls) & task)
    funcs = []
    for f in root.rglob("*.py"):
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = len(n.args.args) + len(n.args.kwonlyargs) - (1 if n.args.args and n.args.args[0].arg in ("self", "cls") else 0)
                funcs.append((n.end_lineno - n.lineno + 1, args, f"{f.relative_to(root)}:{n.name}"))
    funcs.sort(reverse=True)
    by_name = {k.split(":")[-1]: (lines, args) for lines, args, k in funcs}
    dispatch = 0
    for f in root.rglob("*.py"):
        tree = ast.parse(f.read_text())
        method_classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)
                          and any(getattr(b, "id", "") in ("AdaptationMethod", "FeatureLevel", "EndToEnd") for b in n.bases)]
        inside = {id(x) for c in method_classes for x in ast.walk(c)}
        for n in ast.walk(tree):
            if isinstance(n, ast.Compare) and id(n) not in inside:
                consts = [c.value for c in ast.walk(n) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
                names = [getattr(x, "id", getattr(x, "attr", "")) for x in ast.walk(n) if isinstance(x, (ast.Name, ast.Attribute))]
                if any(c in METHOD_NAMES for c in consts) and any("method" in s or "adapt" in s for s in names):
                    dispatch += 1
    writes = Counter()
    for f in root.rglob("*.py"):
        if f.name == "config.py":
            continue
        for n in ast.walk(ast.parse(f.read_text())):
            targets = n.targets if isinstance(n, ast.Assign) else [n.target] if isinstance(n, ast.AugAssign) else []
            for t in targets:
                base = t.value if isinstance(t, ast.Subscript) else t
                base = base.value if isinstance(base, ast.Attribute) and isinstance(t, ast.Subscript) else base
                if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id.endswith("cfg"):
                    writes[str(f.relative_to(root))] += 1
            if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setattr" and n.args and \
                    isinstance(n.args[0], ast.Name) and n.args[0].id.endswith("cfg"):
                writes[str(f.relative_to(root))] += 1
    return {"task_members": len(task), "overrides": overrides, "longest": funcs[:5],
            "train_loop": by_name.get("train_loop"), "create_app": by_name.get("create_app"),
            "method_name_comparisons": dispatch, "config_writes": dict(writes)}


def main() -> None:
    for src in sys.argv[1:] or ["src/transferkit"]:
        s = shape(Path(src))
        print(f"== {src}")
        print(f"Task members: {s['task_members']}; overrides per task: "
              + ", ".join(f"{k} {v}" for k, v in sorted(s["overrides"].items(), key=lambda kv: -kv[1])))
        print(f"train_loop: {s['train_loop'][0]} lines, {s['train_loop'][1]} parameters; "
              f"create_app: {s['create_app'][0]} lines")
        print("longest functions: " + "; ".join(f"{k} {lines}" for lines, _, k in s["longest"]))
        print(f"adaptation method-name comparisons outside a method class: {s['method_name_comparisons']}")
        print(f"writes into a config: {sum(s['config_writes'].values())} ("
              + ", ".join(f"{k} {v}" for k, v in sorted(s["config_writes"].items())) + ")")


if __name__ == "__main__":
    main()
