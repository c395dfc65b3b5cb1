"""An SQLite library too old for the store is refused at open, saying what to do."""

from __future__ import annotations

import sqlite3

import pytest

from orchestrator.store.sqlite import MIN_SQLITE_VERSION, SQLiteTooOld, require_sqlite


def test_an_old_sqlite_is_refused_with_what_to_do() -> None:
    with pytest.raises(SQLiteTooOld) as refused:
        require_sqlite((3, 31, 1))
    message = str(refused.value)
    assert "3.31.1" in message and "3.35.0 or later" in message
    assert "UPSCALE_DATABASE_URL" in message


@pytest.mark.parametrize("version", [MIN_SQLITE_VERSION, (3, 40, 1), (4, 0, 0)])
def test_a_recent_enough_sqlite_is_taken(version: tuple[int, int, int]) -> None:
    require_sqlite(version)


def test_this_python_has_a_recent_enough_sqlite() -> None:
    # The rest of the suite runs on it: say so plainly if a machine lacks it.
    require_sqlite(sqlite3.sqlite_version_info)
