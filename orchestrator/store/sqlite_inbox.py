"""The SQLite inbox writer: opportunistic group commit for incoming callbacks.

A callback is answered 200 only once its raw delivery is committed. One commit
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

from orchestrator.store.protocol import DeliveryStatus, NewDelivery
from orchestrator.store.rows import DELIVERY_COLUMNS, delivery_values
from schemas.errors import StoreUnavailable

# A bound on one transaction, so that a huge backlog still commits in steps.
MAX_BATCH = 512
# How long the writer keeps the store's write lock while callbacks keep coming.
SESSION_S = 0.05

_INSERT = f"INSERT INTO deliveries ({DELIVERY_COLUMNS}) VALUES "
_ROW_MARKS = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SEEN = "SELECT DISTINCT dedupe_key FROM deliveries WHERE dedupe_key IN ({marks})"
# Below SQLite's default limit on bound parameters (999 before 3.32).
_KEYS_PER_QUERY = 500
_ROWS_PER_INSERT = 99  # x 10 columns

log = logging.getLogger(__name__)

T = TypeVar("T")
_Waiter = tuple[NewDelivery, "asyncio.Future[DeliveryStatus]"]


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

    async def write(self, new: NewDelivery) -> DeliveryStatus:
        """Commit one delivery; PENDING, or DUPLICATE when its dedupe key was seen."""
        if self._executor is None:
            raise StoreUnavailable("store is not open")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[DeliveryStatus] = loop.create_future()
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
                statuses = self._write_batch([new for new, _ in batch])
            except (sqlite3.Error, StoreUnavailable) as exc:
                loop.call_soon_threadsafe(_fail, batch, exc)
            except BaseException as exc:
                loop.call_soon_threadsafe(_fail, batch, exc)
                raise
            else:
                loop.call_soon_threadsafe(_resolve, batch, statuses)
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
        return con

    def _write_batch(self, batch: Sequence[NewDelivery]) -> list[DeliveryStatus]:
        con = self._con
        if con is None:
            raise sqlite3.OperationalError("inbox connection is closed")
        keys = list({new.dedupe_key for new in batch})
        self._check()
        con.execute("BEGIN IMMEDIATE")
        try:
            seen: set[str] = set()
            for at in range(0, len(keys), _KEYS_PER_QUERY):
                some_keys = keys[at : at + _KEYS_PER_QUERY]
                marks = ",".join("?" * len(some_keys))
                found = con.execute(_SEEN.format(marks=marks), some_keys).fetchall()
                seen.update(key for (key,) in found)
            statuses: list[DeliveryStatus] = []
            for new in batch:
                duplicate = new.dedupe_key in seen
                seen.add(new.dedupe_key)
                statuses.append(DeliveryStatus.DUPLICATE if duplicate else DeliveryStatus.PENDING)
            rows = [
                delivery_values(new, status) for new, status in zip(batch, statuses, strict=True)
            ]
            # Many rows per statement: the thread takes the interpreter lock back once per
            # statement, not once per row (and the event loop keeps it busy meanwhile).
            for at in range(0, len(rows), _ROWS_PER_INSERT):
                some_rows = rows[at : at + _ROWS_PER_INSERT]
                values = ",".join([_ROW_MARKS] * len(some_rows))
                con.execute(_INSERT + values, [v for row in some_rows for v in row])
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        return statuses


def _resolve(batch: Sequence[_Waiter], statuses: Sequence[DeliveryStatus]) -> None:
    for (_, waiter), status in zip(batch, statuses, strict=True):
        if not waiter.done():
            waiter.set_result(status)


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
