"""Notices commits made by other SQLite connections, other processes' included.

SQLite has no LISTEN/NOTIFY. ``PRAGMA data_version`` on a connection changes
whenever another connection has committed to the database since it was last
read, and reading it costs a few microseconds with no lock taken. A thread of
its own reads it every ``interval_s`` on a connection of its own and, when it
changed, calls ``on_change`` on the event loop. So a worker learns of a job a
web process created, and a web process's event stream of events a worker
wrote, within one interval, while an idle process costs next to nothing: the
event loop is not woken at all while nothing changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

INTERVAL_S = 0.15


class DataVersionWatch:
    def __init__(
        self, path: Path, on_change: Callable[[], None], *, interval_s: float = INTERVAL_S
    ) -> None:
        self._path = path
        self._on_change = on_change
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching (call from the event loop that ``on_change`` runs on)."""
        if self._thread is not None:
            return
        loop = asyncio.get_running_loop()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._watch, args=(loop,), name="sqlite-watch", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        await asyncio.to_thread(thread.join)

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            # Autocommit: no read transaction stays open to hide other commits.
            con = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            log.exception("store.watch_failed")
            return
        try:
            last = self._version(con)
            while not self._stop.wait(self._interval_s):
                current = self._version(con)
                if current is None or current == last:
                    continue
                last = current
                try:
                    loop.call_soon_threadsafe(self._on_change)
                except RuntimeError:  # the loop is closed: nobody is left to wake
                    return
        finally:
            with contextlib.suppress(sqlite3.Error):
                con.close()

    @staticmethod
    def _version(con: sqlite3.Connection) -> int | None:
        try:
            row = con.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error:
            # Busy or briefly unreadable: look again at the next interval.
            return None
        return int(row[0]) if row else None
