"""local/ imports run one way (issue 16): seed -> stack -> jvm_cache, no circle, counting the
imports inside functions too (an import in a function is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

LOCAL = Path(__file__).resolve().parents[2] / "local"


def local_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "local":
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("local."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("local.")}
    return names - {path.stem}


def test_local_modules_import_one_way():
    graph = {p.stem: local_imports(p) for p in LOCAL.glob("*.py") if p.stem != "__init__"}
    assert graph["seed"] == {"stack"} and graph["stack"] == {"jvm_cache"} and graph["jvm_cache"] == set()

    def reaches(start: str, goal: str, seen: frozenset = frozenset()) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ()))

    assert [m for m in graph if reaches(m, m)] == []
