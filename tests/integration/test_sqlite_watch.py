"""Commits of other connections and processes are noticed: at once, and without
waking an idle process, where the kernel reports writes (inotify); by looking every
interval elsewhere."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from orchestrator.store.sqlite_watch import DataVersionWatch


def _database(path: Path) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as con:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE t (x INTEGER)")


def _commit(path: Path, n: int = 1) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as con:
        for i in range(n):
            con.execute("INSERT INTO t VALUES (?)", (i,))


async def _changes_after_commit(path: Path, watch: DataVersionWatch, seen: asyncio.Event) -> float:
    watch.start()
    try:
        await asyncio.sleep(0.3)
        assert not seen.is_set()  # nothing committed: nothing noticed
        started = time.monotonic()
        # In another thread, as another process would.
        await asyncio.to_thread(_commit, path)
        await asyncio.wait_for(seen.wait(), timeout=5)
        return time.monotonic() - started
    finally:
        await watch.stop()


@pytest.mark.parametrize("notices", [True, False], ids=["notified", "polled"])
async def test_a_commit_elsewhere_is_noticed(tmp_path: Path, notices: bool) -> None:
    db = tmp_path / "w.db"
    _database(db)
    seen = asyncio.Event()
    watch = DataVersionWatch(db, seen.set, interval_s=0.15, notices=notices)
    took = await _changes_after_commit(db, watch, seen)
    assert took < 1.0, took


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
async def test_on_linux_an_idle_watch_takes_no_thread_and_a_burst_few_looks(
    tmp_path: Path,
) -> None:
    db = tmp_path / "w.db"
    _database(db)
    changes = 0

    def changed() -> None:
        nonlocal changes
        changes += 1

    watch = DataVersionWatch(db, changed, interval_s=0.15)
    watch.start()
    try:
        assert watch.mode == "notified"
        # No thread looks while nothing happens.
        assert not any(t.name == "sqlite-watch" for t in threading.enumerate())
        # A burst of 500 commits over about half a second is told a few times, each at
        # most once an interval, and the last commit is among them.
        started = time.monotonic()
        await asyncio.to_thread(_commit, db, 500)
        took = time.monotonic() - started
        await asyncio.sleep(0.5)
        assert 1 <= changes <= took / 0.15 + 3, (changes, took)
        before = changes
        await asyncio.to_thread(_commit, db)
        await asyncio.sleep(0.5)
        assert changes == before + 1
    finally:
        await watch.stop()
    assert watch.mode == "off"
