"""Numbered migrations, applied in order and tracked by a schema version."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(dialect: str) -> list[Migration]:
    folder = resources.files("orchestrator") / "migrations" / dialect
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise RuntimeError(f"migration {expected:04d} is missing ({dialect})")
    return found


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer release than this one."""


def refuse_newer(current: int, known: int) -> None:
    """SchemaTooNew if the database's schema is past the ``known`` migrations."""
    if current > known:
        raise SchemaTooNew(
            f"database schema {current} is newer than this release knows ({known}); "
            "upgrade the service"
        )


class SchemaNotReady(RuntimeError):
    """The database is behind this release: its migrations have not been applied yet."""
