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
