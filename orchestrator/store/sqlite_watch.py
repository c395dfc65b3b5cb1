"""Notices commits made by other SQLite connections, other processes' included.

SQLite has no LISTEN/NOTIFY. ``PRAGMA data_version`` on a connection changes
whenever another connection has committed to the database since it was last
read, and reading it costs a few microseconds with no lock taken. When it
changed, ``on_change`` is called on the event loop. So a worker learns of a job a
web process created, and a web process's event stream of events a worker wrote.

When to read it:

- **On Linux, when the write-ahead log is written.** Every commit appends to the
  ``-wal`` file, and the kernel reports each write to a file in the database's
  directory (inotify) on a descriptor the event loop watches. An idle service is
  not woken at all; a commit is noticed at once. While commits keep coming, the
  descriptor is looked at no more often than every ``interval_s``.
- **Elsewhere** (or when inotify cannot be had), a thread of its own reads it
  every ``interval_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import sqlite3
import struct
import sys
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

INTERVAL_S = 0.15

# From <sys/inotify.h>.
_IN_MODIFY, _IN_CREATE, _IN_MOVED_TO, _IN_Q_OVERFLOW = 0x002, 0x100, 0x080, 0x4000
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name


class DataVersionWatch:
    def __init__(
        self,
        path: Path,
        on_change: Callable[[], None],
        *,
        interval_s: float = INTERVAL_S,
        notices: bool = True,
    ) -> None:
        self._path = path
        self._on_change = on_change
        self._interval_s = interval_s
        self._notices = notices  # False: poll, as where inotify cannot be had
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._notified: _WalNotices | None = None

    @property
    def mode(self) -> str:
        """How commits are noticed: ``"notified"`` (inotify), ``"polled"`` or ``"off"``."""
        if self._notified is not None:
            return "notified"
        return "polled" if self._thread is not None else "off"

    def start(self) -> None:
        """Start watching (call from the event loop that ``on_change`` runs on)."""
        if self._thread is not None or self._notified is not None:
            return
        loop = asyncio.get_running_loop()
        notices = None
        if self._notices:
            notices = _WalNotices.open(self._path, self._on_change, self._interval_s, loop)
        if notices is not None:
            self._notified = notices
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._watch, args=(loop,), name="sqlite-watch", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        notices, self._notified = self._notified, None
        if notices is not None:
            notices.close()
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        await asyncio.to_thread(thread.join)

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        con = _connect(self._path)
        if con is None:
            return
        try:
            last = _version(con)
            while not self._stop.wait(self._interval_s):
                current = _version(con)
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


class _WalNotices:
    """The inotify descriptor of the database's directory, read on the event loop."""

    def __init__(
        self,
        fd: int,
        con: sqlite3.Connection,
        names: frozenset[bytes],
        on_change: Callable[[], None],
        interval_s: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._fd = fd
        self._con = con
        self._names = names
        self._on_change = on_change
        self._interval_s = interval_s
        self._loop = loop
        self._last = _version(con)
        self._resting: asyncio.TimerHandle | None = None
        loop.add_reader(fd, self._readable)

    @classmethod
    def open(
        cls,
        path: Path,
        on_change: Callable[[], None],
        interval_s: float,
        loop: asyncio.AbstractEventLoop,
    ) -> _WalNotices | None:
        if not sys.platform.startswith("linux"):
            return None
        try:
            # The C library the interpreter runs on (no search for it on every start).
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        except (OSError, AttributeError):
            return None
        if fd < 0:
            return None
        directory = str(path.parent).encode()
        mask = _IN_MODIFY | _IN_CREATE | _IN_MOVED_TO
        con = None
        try:
            if libc.inotify_add_watch(fd, directory, mask) < 0:
                raise OSError(ctypes.get_errno(), "inotify_add_watch failed")
            con = _connect(path)
            if con is None:
                raise OSError("the database could not be opened")
            names = frozenset({path.name.encode(), f"{path.name}-wal".encode()})
            return cls(fd, con, names, on_change, interval_s, loop)
        except (OSError, NotImplementedError, RuntimeError) as exc:
            log.info("store.watch_polls", extra={"error": str(exc)})
            if con is not None:
                con.close()
            os.close(fd)
            return None

    def close(self) -> None:
        if self._resting is not None:
            self._resting.cancel()
            self._resting = None
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                self._loop.remove_reader(self._fd)
        os.close(self._fd)
        with contextlib.suppress(sqlite3.Error):
            self._con.close()

    def _readable(self) -> None:
        if not self._drain():
            return
        self._look()
        # While commits keep coming, look again only after a rest; and look once more
        # then in any case: the log is written before the commit is complete, so the
        # version read at the notice may still be the old one.
        self._loop.remove_reader(self._fd)
        self._resting = self._loop.call_later(self._interval_s, self._rested)

    def _rested(self) -> None:
        self._resting = None
        self._look()
        # A commit during the rest has left the descriptor readable: read at once.
        self._loop.add_reader(self._fd, self._readable)

    def _look(self) -> None:
        current = _version(self._con)
        if current is not None and current != self._last:
            self._last = current
            self._on_change()

    def _drain(self) -> bool:
        """Read every pending notice; whether one was about the database or its log."""
        about_db = False
        while True:
            try:
                data = os.read(self._fd, 64 * 1024)
            except BlockingIOError:
                return about_db
            if not data:
                return about_db
            at = 0
            while at + _EVENT.size <= len(data):
                _, mask, _, size = _EVENT.unpack_from(data, at)
                name = data[at + _EVENT.size : at + _EVENT.size + size].rstrip(b"\0")
                # Notices lost to a full queue may have been about the database.
                about_db = about_db or name in self._names or bool(mask & _IN_Q_OVERFLOW)
                at += _EVENT.size + size


def _connect(path: Path) -> sqlite3.Connection | None:
    try:
        # Autocommit: no read transaction stays open to hide other commits. It never
        # waits for a lock (it is read on the event loop): busy is looked at again.
        return sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
    except sqlite3.Error:
        log.exception("store.watch_failed")
        return None


def _version(con: sqlite3.Connection) -> int | None:
    try:
        row = con.execute("PRAGMA data_version").fetchone()
    except sqlite3.Error:
        # Busy or briefly unreadable: look again at the next notice or interval.
        return None
    return int(row[0]) if row else None
