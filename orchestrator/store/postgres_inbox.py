"""The PostgreSQL inbox writer: group commit of incoming callbacks.

A callback is answered 200 only once it is committed to the append-only
``received`` table. Rather than a transaction per callback, callers queue
their delivery and wait; a flush takes everything queued and writes it with
one statement (arrays through ``unnest``: one round trip whatever the group's
size), committed by itself. Up to ``IN_FLIGHT`` flushes run at once, each on a
pooled connection, so a group never waits for the previous one's commit: what
arrives meanwhile goes out with the next flush at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from orchestrator.store.postgres_conn import Pool, translated
from orchestrator.store.protocol import NewDelivery
from orchestrator.store.rows import received_values
from schemas.errors import StoreUnavailable

# A bound on one statement, so that a huge backlog still commits in steps.
MAX_BATCH = 1000
# Flushes under way at once (each holds a pooled connection while it commits).
IN_FLIGHT = 2

_INSERT = """
    INSERT INTO received (id, provider, claimed_job_id, received_at, headers, body,
                          dedupe_key, source)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[],
                         $6::bytea[], $7::text[], $8::text[])
"""

log = logging.getLogger(__name__)

_Waiter = tuple[NewDelivery, "asyncio.Future[None]"]


class ReceivedWriter:
    def __init__(self, pool: Callable[[], Pool]) -> None:
        self._pool = pool
        self._queue: list[_Waiter] = []
        self._flushes: set[asyncio.Task[None]] = set()

    async def write(self, new: NewDelivery) -> None:
        """Return once the delivery is committed; StoreUnavailable if it was not."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((new, waiter))
        if len(self._flushes) < IN_FLIGHT:
            task = asyncio.create_task(self._flush(), name="received-writer")
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
        # A caller that goes away does not take the write with it: it is queued.
        await waiter

    async def close(self) -> None:
        """Finish what is queued."""
        while self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)

    async def _flush(self) -> None:
        while self._queue:
            batch = self._queue[:MAX_BATCH]
            del self._queue[:MAX_BATCH]
            try:
                await self._insert([new for new, _ in batch])
            except Exception as exc:
                if not isinstance(exc, StoreUnavailable):
                    log.exception("received writer failed")
                _fail(batch, exc)
            else:
                for _, waiter in batch:
                    if not waiter.done():
                        waiter.set_result(None)

    async def _insert(self, batch: Sequence[NewDelivery]) -> None:
        columns = list(zip(*(received_values(new) for new in batch), strict=True))
        with translated("write"):
            async with self._pool().acquire() as conn:
                await conn.execute(_INSERT, *(list(c) for c in columns))


def _fail(batch: Sequence[_Waiter], exc: Exception) -> None:
    """Nothing of the batch was committed: each caller gets StoreUnavailable (a 503)."""
    for _, waiter in batch:
        if not waiter.done():
            message = exc.message if isinstance(exc, StoreUnavailable) else str(exc)
            waiter.set_exception(StoreUnavailable(f"database write failed: {message}"))
            waiter.exception()  # its caller may have gone away: not "never retrieved"
