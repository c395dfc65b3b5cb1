"""The SQLite inbox writer: opportunistic group commit for incoming callbacks.

A callback is answered 200 only once its raw delivery is committed, to the
append-only ``received`` table (no index but its key, no duplicate check: the
inbox pass files it among the deliveries, ``SqlInbox.admit_received``). A
group is one multi-row INSERT, committed by itself: the writer's thread gives
up the interpreter lock for SQLite once a group, not once per statement of a
transaction, and each time it wants the lock back it may wait for the event
loop's thread to let go of it. One commit
per request caps a single SQLite connection at a few thousand callbacks a
second (and near the disk's fsync rate with ``synchronous=FULL``), and every
request would wait its turn for the store's write lock. Here a caller queues
its delivery and waits; the writer's thread takes everything queued by then and
writes it in a single transaction, on its own connection, and the event loop
wakes each caller with the status its delivery got. There is no timer: a lone
delivery is written at once, and deliveries arriving while a batch is being
written go together in the next one, which the thread starts at once without
a round trip through the event loop. Each caller still returns only after its
own row is committed.

The writer holds the store's write lock while it writes (for at most
``SESSION_S`` at a time), so its transactions never interleave with the
store's other writes in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
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
# How long the writer keeps the store's write lock while callbacks keep coming.
SESSION_S = 0.05

_COLUMNS = 8

log = logging.getLogger(__name__)

T = TypeVar("T")
_Waiter = tuple[NewDelivery, "asyncio.Future[None]"]


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
        # Filled on the event loop, emptied by the writer's thread.
        self._incoming: queue.SimpleQueue[_Waiter] = queue.SimpleQueue()
        self._drainer: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._con: sqlite3.Connection | None = None
        # Rows in one INSERT, within this SQLite's limit on bound parameters.
        self._rows_per_insert = MAX_BATCH

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inbox-writer")
        self._con = await self._run(self._connect)

    async def close(self) -> None:
        """Finish what is queued, then close the connection and the thread."""
        if self._drainer is not None:
            await asyncio.gather(self._drainer, return_exceptions=True)
        if self._executor is None:
            return
        con, self._con = self._con, None
        if con is not None:
            await self._run(con.close)
        self._executor.shutdown(wait=True)
        self._executor = None

    async def write(self, new: NewDelivery) -> None:
        """Return once the delivery is committed to ``received``."""
        if self._executor is None:
            raise StoreUnavailable("store is not open")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._incoming.put((new, waiter))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain(loop), name="inbox-writer")
        # A caller that goes away (its client hung up) does not take the write with it:
        # the write is queued already, and a cancelled waiter is skipped when resolved.
        return await waiter

    async def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        # No await between the last look at the queue and this task's end, so a
        # delivery queued meanwhile always finds a drainer (write() runs on this loop).
        while not self._incoming.empty():
            try:
                async with self._lock:
                    await self._run(self._session, loop)
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
                self._write_batch([new for new, _ in batch])
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

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        con.execute(f"PRAGMA synchronous={self._synchronous}")
        con.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        limit = con.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._rows_per_insert = max(1, min(MAX_BATCH, limit // _COLUMNS))
        return con

    def _write_batch(self, batch: Sequence[NewDelivery]) -> None:
        con = self._con
        if con is None:
            raise sqlite3.OperationalError("inbox connection is closed")
        self._check()
        per = self._rows_per_insert
        rows = [v for new in batch for v in received_values(new)]
        if len(batch) <= per:
            # One statement, committed by itself (autocommit): atomic, and one
            # step through SQLite for the whole group.
            con.execute(insert_rows(INSERT_RECEIVED, RECEIVED_MARKS, len(batch)), rows)
            return
        con.execute("BEGIN IMMEDIATE")
        try:
            for at in range(0, len(batch), per):
                count = min(per, len(batch) - at)
                values = rows[at * _COLUMNS : (at + count) * _COLUMNS]
                con.execute(insert_rows(INSERT_RECEIVED, RECEIVED_MARKS, count), values)
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
