"""Imports point one way: receiver -> orchestrator -> schemas."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"schemas": {"orchestrator", "receiver"}, "orchestrator": {"receiver"}}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_points_upwards(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
        if _imports(path) & FORBIDDEN[package]
    }
    assert offenders == {}


def test_schemas_do_no_io() -> None:
    io_modules = {"httpx", "aiosqlite", "sqlite3", "asyncio", "socket", "starlette"}
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imports(p) & io_modules)
        for p in (ROOT / "schemas").rglob("*.py")
        if _imports(p) & io_modules
    }
    assert offenders == {}


def test_init_files_are_empty() -> None:
    for package in ("schemas", "orchestrator", "receiver"):
        for init in (ROOT / package).rglob("__init__.py"):
            assert init.read_text("utf-8").strip() == "", init


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _module_graph(package: str) -> dict[str, set[str]]:
    """Each module of ``package`` and the modules of ``package`` it imports, anywhere
    in its body (an import inside a function closes a circle all the same)."""
    modules = {_module_name(p): p for p in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                # ``from orchestrator.store import protocol`` imports a module, too.
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected groups of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group: list[str] = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_circle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", ["orchestrator", "receiver", "schemas"])
def test_no_import_circle_within_a_package(package: str) -> None:
    graph = _module_graph(package)
    assert any(graph.values())  # the graph was read: its modules import each other
    assert _circles(graph) == []


# Inside orchestrator/, each folder may import only the folders listed for it: the
# folder tree reads like the architecture, from pure decisions at the bottom to the
# command line at the top (README, "Architecture").
FOLDERS: dict[str, set[str]] = {
    "common": set(),
    "domain": set(),
    "security": {"common"},
    "results": {"common", "security"},
    "store": {"common", "domain", "security"},
    "fetch": {"common", "results", "security"},
    "providers": {"common", "fetch"},
    "local": {"common", "domain", "fetch", "security"},
    "sandbox": {"common", "domain", "fetch", "security"},
    "outbound": {"common", "domain", "fetch", "security", "store"},
    "core": {"common", "domain", "fetch", "outbound", "providers", "results", "security", "store"},
    "service": {
        "common",
        "core",
        "domain",
        "fetch",
        "local",
        "outbound",
        "providers",
        "results",
        "sandbox",
        "security",
        "store",
    },
    "cli": {
        "common",
        "core",
        "domain",
        "providers",
        "results",
        "sandbox",
        "security",
        "service",
        "store",
    },
    "migrations": set(),
}


def test_every_orchestrator_folder_has_a_place_in_the_order() -> None:
    assert _circles(FOLDERS) == []  # the order itself runs one way
    folders = {p.name for p in (ROOT / "orchestrator").iterdir() if p.is_dir()} - {"__pycache__"}
    assert folders == set(FOLDERS)
    assert not [p.name for p in (ROOT / "orchestrator").glob("*.py") if p.name != "__init__.py"]


def test_orchestrator_folders_import_only_the_folders_below_them() -> None:
    offenders: dict[str, list[str]] = {}
    for folder, allowed in FOLDERS.items():
        for path in (ROOT / "orchestrator" / folder).rglob("*.py"):
            tree = ast.parse(path.read_text("utf-8"))
            used = {
                node.module.split(".")[1]
                for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom)
                and node.module
                and node.level == 0
                and node.module.startswith("orchestrator.")
            }
            wrong = sorted(used - allowed - {folder})
            if wrong:
                offenders[str(path.relative_to(ROOT))] = wrong
    assert offenders == {}
