"""The SQLite inbox writer: group commit for incoming callbacks.

A callback is answered 200 only once its raw delivery is committed, to the
append-only ``received`` table (no index but its key, no duplicate check: the
inbox pass files it among the deliveries, ``SqlInbox.admit_received``). A
group is one multi-row INSERT, committed by itself.

Two ways to commit a group, the first preferred:

- **On the event loop, at the end of the loop's turn.** Every callback read in
  one turn of the event loop queues its row; one callback scheduled for the end
  of that turn writes them all in one statement, on a connection that never
  waits for a lock (``busy_timeout=0``), and resolves each caller. A group of a
  dozen rows commits in a few tens of microseconds (``synchronous=NORMAL``),
  less than handing it to a thread and back costs: no thread wake-up, no wait
  for the interpreter lock, no wake-up of the loop from another thread. (With
  ``synchronous=FULL`` the loop also waits for the disk once a group.)
- **On the writer's thread**, whenever the loop cannot write without waiting:
  the store's other writer is in a transaction in this process (it holds the
  store's write lock), another process holds SQLite's (the loop's connection is
  answered "busy"), a checkpoint is finishing (below), or the group is larger
  than one statement. The thread takes everything queued by then and writes it
  in a single transaction on its own connection, which waits up to the busy
  timeout for a lock held by another process (looking every half millisecond
  whether it is free, ``LOOK_S``), batch after batch while deliveries keep
  coming (at most ``SESSION_S`` at a time, holding the store's write lock so
  that its transactions never interleave with the store's other writes in this
  process).

The loop's connection does not checkpoint the write-ahead log itself (that
would stall the loop for milliseconds). Once the log has grown by about
``CHECKPOINT_BYTES``, the thread copies it into the database while the loop
goes on writing, then copies the little written meanwhile while the loop's
groups go to the thread. The log is then wholly copied when the next write
starts, which is what lets SQLite start it again from its beginning rather than
grow it for good.

Each caller returns only after its own row is committed, or gets
StoreUnavailable (a 503) when it could not be.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from orchestrator.store.inbox_queries import INSERT_RECEIVED, RECEIVED_MARKS, insert_rows
from orchestrator.store.protocol import NewDelivery
from orchestrator.store.rows import received_values
from schemas.errors import StoreUnavailable

# A bound on one transaction, so that a huge backlog still commits in steps.
MAX_BATCH = 512
# How often the writer's thread looks whether a lock held elsewhere is free: every
# half millisecond, every two once it has waited 50 ms. (SQLite's own busy handler
# sleeps up to 100 ms between two looks, and finds the lock free only if it looks
# when it is: behind another process writing in short transactions one after
# another, a callback would wait hundreds of milliseconds.)
LOOK_S, LOOK_LONG_S, LONG_WAIT_S = 0.0005, 0.002, 0.05
# How long the writer's thread keeps the store's write lock while callbacks keep coming.
SESSION_S = 0.05
# Bytes the log may grow by between two checkpoints: SQLite's own default of 1000
# pages. Each commit is counted as a page (the table's last page, written again)
# plus its rows.
CHECKPOINT_BYTES = 1000 * 4096

_COLUMNS = 8
# The headers' and body's places in a row (``received_values``), and about what the
# rest of a row takes in a page.
_HEADERS, _BODY, _ROW = 4, 5, 150
_BUSY = frozenset((sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED))

log = logging.getLogger(__name__)

T = TypeVar("T")
_Row = tuple[Any, ...]
_Waiter = tuple[_Row, "asyncio.Future[None]"]


class InboxWriter:
    def __init__(
        self,
        path: Path,
        *,
        synchronous: str,
        busy_timeout_ms: int,
        lock: asyncio.Lock,
        check: Callable[[], None] = lambda: None,
    ) -> None:
        self._path = path
        # Raises StoreUnavailable when the file is no longer the database (one stat a batch).
        self._check = check
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._lock = lock
        # Rows queued during this turn of the event loop, written at its end.
        self._turn: list[_Waiter] = []
        self._flush_at_turn_end = False
        self._turn_loop: asyncio.AbstractEventLoop | None = None
        # Filled on the event loop, emptied by the writer's thread.
        self._incoming: queue.SimpleQueue[_Waiter] = queue.SimpleQueue()
        self._drainer: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._con: sqlite3.Connection | None = None  # the thread's
        self._now: sqlite3.Connection | None = None  # the loop's: never waits
        self._logged = 0  # bytes, about, since the last checkpoint
        self._checkpoint: asyncio.Future[None] | None = None
        # Held by the loop while it writes, by the writer's thread for the end of a
        # checkpoint (the loop then hands its rows over rather than wait for it).
        self._loop_writes = threading.Lock()
        # Whether the store's write lock is held by this writer's thread.
        self._draining = False
        # Rows in one INSERT, within this SQLite's limit on bound parameters.
        self._rows_per_insert = MAX_BATCH

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inbox-writer")
        self._con = await self._run(self._connect, True)
        self._now = await self._run(self._connect, False)

    async def close(self) -> None:
        """Finish what is queued, then close the connections and the thread."""
        while self._turn or (self._drainer is not None and not self._drainer.done()):
            if self._drainer is not None and not self._drainer.done():
                await asyncio.gather(self._drainer, return_exceptions=True)
            else:
                await asyncio.sleep(0)
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
        if self._executor is None:
            return
        now, self._now = self._now, None
        con, self._con = self._con, None
        for each in (now, con):
            if each is not None:
                await self._run(each.close)
        self._executor.shutdown(wait=True)
        self._executor = None

    def write(self, new: NewDelivery) -> asyncio.Future[None]:
        """A future that completes once the delivery is committed to ``received``, or
        fails with StoreUnavailable. (A future rather than a coroutine: the callback
        route awaits it directly, one frame less to suspend and resume a callback.)"""
        # The loop is looked up once a turn (each lookup is a system call, getpid).
        loop = self._turn_loop
        if loop is None or not self._flush_at_turn_end:
            loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        if self._executor is None:
            waiter.set_exception(StoreUnavailable("store is not open"))
            return waiter
        try:
            row = received_values(new)
        except (TypeError, ValueError) as exc:  # a bug in what was asked: this caller's alone
            waiter.set_exception(StoreUnavailable(f"database write failed: {exc}"))
            return waiter
        self._turn.append((row, waiter))
        if not self._flush_at_turn_end:
            self._flush_at_turn_end = True
            self._turn_loop = loop
            loop.call_soon(self._flush_turn, loop)
        # A caller that goes away (its client hung up) does not take the write with it:
        # the write is queued already, and a cancelled waiter is skipped when resolved.
        return waiter

    # on the event loop ----------------------------------------------------------------

    def _flush_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        """The rows queued during the turn that just ended: committed here if nothing
        would make the loop wait, else handed to the writer's thread."""
        self._flush_at_turn_end = False
        batch, self._turn = self._turn, []
        con = self._now
        if (
            con is None
            or len(batch) > self._rows_per_insert
            # The store's other writer is in a transaction (SQLite would answer busy).
            # While this writer's thread holds the lock instead, the loop tries all the
            # same: the thread is only needed while the loop cannot write.
            or (self._lock.locked() and not self._draining)
            or not self._loop_writes.acquire(blocking=False)
        ):
            self._hand_over(batch, loop)
            return
        try:
            self._check()
            con.execute(
                insert_rows(INSERT_RECEIVED, RECEIVED_MARKS, len(batch)),
                [v for row, _ in batch for v in row],
            )
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) in _BUSY:
                self._hand_over(batch, loop)  # locked elsewhere: the thread waits for it
            else:
                _fail(batch, exc)
        except (sqlite3.Error, StoreUnavailable) as exc:
            _fail(batch, exc)
        else:
            _resolve(batch)
            self._logged += 4096 + sum(
                [_ROW + len(row[_HEADERS]) + len(row[_BODY]) for row, _ in batch]
            )
            if self._logged >= CHECKPOINT_BYTES and self._checkpoint is None:
                self._logged = 0
                self._checkpoint = loop.run_in_executor(self._executor, self._checkpoint_log)
                self._checkpoint.add_done_callback(self._checkpointed)
        finally:
            self._loop_writes.release()

    def _hand_over(self, batch: list[_Waiter], loop: asyncio.AbstractEventLoop) -> None:
        for waiter in batch:
            self._incoming.put(waiter)
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain(loop), name="inbox-writer")

    def _checkpointed(self, done: asyncio.Future[None]) -> None:
        self._checkpoint = None
        if not done.cancelled() and done.exception() is not None:
            log.warning("inbox.checkpoint_failed", extra={"error": str(done.exception())})

    async def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        # No await between the last look at the queue and this task's end, so a
        # delivery queued meanwhile always finds a drainer (write() runs on this loop).
        while not self._incoming.empty():
            try:
                async with self._lock:
                    self._draining = True
                    try:
                        await self._run(self._session, loop)
                    finally:
                        self._draining = False
            except Exception as exc:  # not an SQLite error: nothing queued may hang on it
                log.exception("inbox writer failed")
                waiting: list[_Waiter] = []
                with contextlib.suppress(queue.Empty):
                    while True:
                        waiting.append(self._incoming.get_nowait())
                _fail(waiting, exc)

    # in the writer's thread ------------------------------------------------------------

    def _session(self, loop: asyncio.AbstractEventLoop) -> None:
        """Write batch after batch while deliveries keep coming, without going back to
        the event loop in between (it is told of each batch's outcome as it goes); at
        most ``SESSION_S``, so that the store's other writers get their turn."""
        ends = time.monotonic() + SESSION_S
        while True:
            batch: list[_Waiter] = []
            with contextlib.suppress(queue.Empty):
                while len(batch) < MAX_BATCH:
                    batch.append(self._incoming.get_nowait())
            if not batch:
                return
            try:
                self._write_waiting([row for row, _ in batch])
            except (sqlite3.Error, StoreUnavailable) as exc:
                loop.call_soon_threadsafe(_fail, batch, exc)
            except BaseException as exc:
                loop.call_soon_threadsafe(_fail, batch, exc)
                raise
            else:
                loop.call_soon_threadsafe(_resolve, batch)
            if time.monotonic() >= ends:
                return

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StoreUnavailable("store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _connect(self, checkpoints: bool) -> sqlite3.Connection:
        # Neither connection waits in SQLite's busy handler: the loop's never waits,
        # and the thread's looks for a lock often itself (``_write_waiting``).
        con = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=0)
        con.execute(f"PRAGMA synchronous={self._synchronous}")
        if not checkpoints:
            con.execute("PRAGMA wal_autocheckpoint=0")
        limit = con.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._rows_per_insert = max(1, min(MAX_BATCH, limit // _COLUMNS))
        return con

    def _checkpoint_log(self) -> None:
        """Copy the log into the database: the bulk of it while the loop goes on
        writing, then what was written meanwhile (little) while the loop's writes wait
        (handed to this thread), so that the log is wholly copied when the next write
        starts. Passive: it never waits for a reader."""
        con = self._con
        if con is None:
            return
        con.execute("PRAGMA wal_checkpoint(PASSIVE)")
        with self._loop_writes:
            con.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _write_waiting(self, rows: Sequence[_Row]) -> None:
        """Write the rows, waiting up to the busy timeout for a lock held elsewhere,
        and taking it as soon as it is free."""
        started = time.monotonic()
        gives_up = started + self._busy_timeout_ms / 1000
        while True:
            try:
                self._write_batch(rows)
                return
            except sqlite3.OperationalError as exc:
                now = time.monotonic()
                if getattr(exc, "sqlite_errorcode", None) not in _BUSY or now >= gives_up:
                    raise
                time.sleep(LOOK_S if now - started < LONG_WAIT_S else LOOK_LONG_S)

    def _write_batch(self, rows: Sequence[_Row]) -> None:
        con = self._con
        if con is None:
            raise sqlite3.OperationalError("inbox connection is closed")
        self._check()
        per = self._rows_per_insert
        values = [v for row in rows for v in row]
        if len(rows) <= per:
            # One statement, committed by itself (autocommit): atomic, and one
            # step through SQLite for the whole group.
            con.execute(insert_rows(INSERT_RECEIVED, RECEIVED_MARKS, len(rows)), values)
            return
        con.execute("BEGIN IMMEDIATE")
        try:
            for at in range(0, len(rows), per):
                count = min(per, len(rows) - at)
                part = values[at * _COLUMNS : (at + count) * _COLUMNS]
                con.execute(insert_rows(INSERT_RECEIVED, RECEIVED_MARKS, count), part)
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise


def _resolve(batch: Sequence[_Waiter]) -> None:
    for _, waiter in batch:
        if not waiter.done():
            waiter.set_result(None)


def _fail(batch: Sequence[_Waiter], exc: BaseException) -> None:
    """Nothing of the batch was committed: each caller gets StoreUnavailable (a 503)."""
    for _, waiter in batch:
        if not waiter.done():
            failure = (
                type(exc)(exc.message)
                if isinstance(exc, StoreUnavailable)
                else StoreUnavailable(f"database write failed: {exc}")
            )
            waiter.set_exception(failure)
            # Its caller may have gone away: do not log the error as never retrieved.
            waiter.exception()
