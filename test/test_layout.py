"""The layout rules the README states: one-way imports, small folders and modules, no outside paths.

Import edges are read from the source (every ``import``, including ``TYPE_CHECKING`` blocks and imports
inside functions), so a circle hidden behind a lazy import still fails here.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

from .conftest import require

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "lbi_ros"
MAX_MODULES_PER_FOLDER = 12
MAX_LINES_PER_MODULE = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lbi_ros"):
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                # Package __init__ files only carry docstrings here, so an edge into a package is not a file edge.
                if target in modules and target != name and modules[target].name != "__init__.py":
                    graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_constructed_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles_between_files():
    assert _cycles(_import_graph()) == []


def test_folders_and_modules_stay_small():
    for folder in [PACKAGE, *(p for p in PACKAGE.rglob("*") if p.is_dir() and p.name != "__pycache__")]:
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) <= MAX_MODULES_PER_FOLDER, f"{folder.relative_to(REPO)} holds {len(modules)} modules"
    for path in PACKAGE.rglob("*.py"):
        lines = len(path.read_text().splitlines())
        assert lines <= MAX_LINES_PER_MODULE, f"{path.relative_to(REPO)} has {lines} lines"


def test_every_package_says_what_it_owns():
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"{init.relative_to(REPO)} has no docstring"


def _tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:  # e.g. an sdist without .git (CI is a clone: fails)
        require(False, f"not a git checkout: {exc}")
        raise
    return [REPO / f for f in out.split() if Path(f).suffix in {".py", ".md", ".yaml", ".sh", ".txt", ".toml", ".xml"}]


def test_no_paths_of_a_particular_machine():
    needles = ("../shared", "/work/", "/home/", "/root/")
    for path in _tracked_text_files():
        if path == Path(__file__).resolve():
            continue
        text = path.read_text(errors="replace")
        for needle in needles:
            assert needle not in text, f"{path.relative_to(REPO)} mentions {needle!r}"


def test_cited_documents_are_in_the_repo():
    for path in _tracked_text_files():
        if path == Path(__file__).resolve():
            continue
        text = path.read_text(errors="replace")
        for doc in ("docs/method.md", "docs/cpu_budget.md", "docs/pose_backbone.md", "docs/deployment.md"):
            if doc in text:
                assert (REPO / doc).is_file(), f"{path.relative_to(REPO)} cites {doc}, which is missing"
