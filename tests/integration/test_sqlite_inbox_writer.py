"""The SQLite inbox writer: callbacks committed at the end of the event loop's turn,
on the writer's thread when the loop would have to wait, with the log kept short."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

from orchestrator.common.clock import FakeClock
from orchestrator.store.protocol import DeliveryStatus, NewDelivery
from tests.factories import open_sqlite

CLOCK = FakeClock()


def _new(i: int, tag: str = "w") -> NewDelivery:
    return NewDelivery(
        id=f"dlv_{tag}{i:06d}",
        provider="upsampler",
        claimed_job_id=None,
        received_at=CLOCK.now(),
        headers={"content-type": "application/json", "user-agent": 'odd "agent"\n'},
        body=b'{"n": %d}' % i,
        dedupe_key=f"{tag}-{i}",
    )


def _received_rows(path: Path) -> int:
    with closing(sqlite3.connect(path)) as con:
        (count,) = con.execute("SELECT COUNT(*) FROM received").fetchone()
    return int(count)


async def test_callbacks_of_one_turn_are_committed_together_before_their_answers(
    tmp_path: Path,
) -> None:
    db = tmp_path / "turn.db"
    async with open_sqlite(db) as store:
        await asyncio.gather(*(store.append_received(_new(i)) for i in range(40)))
        # Answered means committed: another connection sees every row.
        assert _received_rows(db) == 40
        delivery = await store.get_delivery("dlv_w000007")
        assert delivery is not None and delivery.status is DeliveryStatus.PENDING
        assert delivery.headers["user-agent"] == 'odd "agent"\n'


async def test_a_lock_held_by_another_process_is_waited_for_off_the_event_loop(
    tmp_path: Path,
) -> None:
    """Another connection holds SQLite's write lock (as another process would): the
    callback waits for it on the writer's thread, and the event loop keeps serving
    meanwhile instead of stalling for the busy timeout."""
    db = tmp_path / "held.db"
    async with open_sqlite(db, busy_timeout_ms=5000) as store:
        gaps: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            last = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticking = asyncio.create_task(ticker())
        with closing(sqlite3.connect(db, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            writes = asyncio.gather(*(store.append_received(_new(i, "h")) for i in range(5)))
            await asyncio.sleep(0.6)
            assert not writes.done()  # nothing answered while the lock is held
            other.execute("COMMIT")
        await asyncio.wait_for(writes, timeout=5)
        stop.set()
        await ticking
        assert _received_rows(db) == 5
        assert max(gaps) < 0.3, f"the event loop stalled for {max(gaps):.2f} s"


async def test_the_write_ahead_log_is_checkpointed_while_callbacks_keep_coming(
    tmp_path: Path,
) -> None:
    """The connection on the event loop does not checkpoint (a stall of milliseconds);
    the writer's thread does, so the log does not grow with every callback."""
    db = tmp_path / "log.db"
    wal = db.with_name(db.name + "-wal")
    async with open_sqlite(db) as store:
        for i in range(6000):
            await store.append_received(_new(i, "c"))
        await asyncio.sleep(0.2)  # the last checkpoint under way
        assert _received_rows(db) == 6000
        size = wal.stat().st_size
    # One commit a callback here: unchecked, the log grows by a page of 4 KiB each
    # (24 MB); checkpointed, it starts again at about 1000 pages.
    assert size < 8 * 1024 * 1024, f"the log grew to {size:,} bytes"


async def test_a_busy_writer_in_another_process_does_not_hold_callbacks_back(
    tmp_path: Path,
) -> None:
    """Another process writing in short transactions, one after another (a worker
    filing the inbox), leaves the lock free for a moment between them: a callback
    waiting for it is committed in the first such moment, not tens of milliseconds
    later (SQLite's own busy handler sleeps up to 100 ms between two looks)."""
    db = tmp_path / "busy.db"
    async with open_sqlite(db, busy_timeout_ms=5000) as store:
        stop = threading.Event()

        def other_process() -> None:
            with closing(sqlite3.connect(db, isolation_level=None, timeout=5)) as other:
                while not stop.is_set():
                    other.execute("BEGIN IMMEDIATE")
                    time.sleep(0.015)  # a transaction of the other writer's
                    other.execute("COMMIT")
                    time.sleep(0.002)  # and the moment the lock is free

        holder = threading.Thread(target=other_process)
        holder.start()
        waits: list[float] = []
        try:
            for i in range(20):
                # At a different moment of the other writer's cycle each time.
                await asyncio.sleep(0.0113)
                started = time.monotonic()
                await store.append_received(_new(i, "b"))
                waits.append(time.monotonic() - started)
        finally:
            stop.set()
            await asyncio.to_thread(holder.join)
        assert _received_rows(db) == 20
        waits.sort()
        assert waits[len(waits) // 2] < 0.05, f"callbacks waited {waits}"
        assert waits[-1] < 0.3, f"callbacks waited {waits}"
