"""The Store on SQLite (aiosqlite, WAL): the embedded default for one process."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from orchestrator.common.signals import Broadcast
from orchestrator.domain.events import Snapshot, default_snapshot
from orchestrator.security.private_files import ensure_private_file
from orchestrator.store import inbox_queries as iq
from orchestrator.store import job_queries as jq
from orchestrator.store import outbox_queries as oq
from orchestrator.store.connector import Conflict, Row, Tx
from orchestrator.store.dialect import SQLITE
from orchestrator.store.migrate import load_migrations, refuse_newer
from orchestrator.store.outbox import OutboundTask
from orchestrator.store.protocol import Delivery, DeliveryStatus, NewDelivery, TransitionListener
from orchestrator.store.rows import delivery_values
from orchestrator.store.sql import SqlStore
from orchestrator.store.sql_jobs import in_due_order
from orchestrator.store.sql_outbox import row_to_task
from orchestrator.store.sqlite_file import DatabaseMarker, FileWatch
from orchestrator.store.sqlite_inbox import InboxWriter
from schemas.errors import StoreUnavailable
from schemas.jobs import Job

# The statements use RETURNING, which SQLite has from 3.35 (2021).
MIN_SQLITE_VERSION = (3, 35, 0)


class SQLiteTooOld(RuntimeError):
    """The SQLite library this Python uses is older than the store needs."""


def require_sqlite(version: tuple[int, int, int]) -> None:
    """SQLiteTooOld, saying what to do, if ``version`` is older than the store needs."""
    if version < MIN_SQLITE_VERSION:
        found = ".".join(map(str, version))
        wanted = ".".join(map(str, MIN_SQLITE_VERSION))
        raise SQLiteTooOld(
            f"this Python uses SQLite {found}; the store needs {wanted} or later. "
            "Use a Python built with a newer SQLite, or PostgreSQL (UPSCALE_DATABASE_URL)."
        )


class SQLiteStore(SqlStore):
    """WAL journal, one writer at a time: the store's writing connection (aiosqlite)
    and the inbox writer's (incoming callbacks, committed in groups) take turns under
    one lock, each only in BEGIN IMMEDIATE transactions. Reads use a third, query-only
    connection. Writes stop once the file at the path is no longer the one opened."""

    dialect = SQLITE

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "NORMAL",
        snapshot: Snapshot = default_snapshot,
        busy_timeout_ms: int = 5000,
        marker: DatabaseMarker | None = None,
    ) -> None:
        self._path = path
        # Whether a database existed here before (None: not asked, as in tests).
        self._marker = marker
        # Is the file at the path still the one the connections have open?
        self._watch = FileWatch(path)
        self._snapshot = snapshot
        # Set whenever an event is committed: wakes the event stream and dispatcher.
        self.events_written = Broadcast()
        # Told of every committed transition: (job before, job after, cause).
        self.transition_listeners: list[TransitionListener] = []
        self._synchronous = synchronous
        self._db: aiosqlite.Connection | None = None
        # Reads go to a connection of their own, one whole statement per call: a
        # snapshot never outlives its statement, and never sits on the writing
        # connection (which could not then upgrade to a write after another
        # connection's commit: SQLite answers "database is locked" at once).
        self._reader: aiosqlite.Connection | None = None
        # One writing connection: transactions of concurrent callers must not interleave.
        self._write_lock = asyncio.Lock()
        self._busy_timeout_ms = busy_timeout_ms
        # Incoming callbacks are committed in groups, on a connection of their own.
        self._inbox = InboxWriter(
            path,
            synchronous=synchronous,
            busy_timeout_ms=busy_timeout_ms,
            lock=self._write_lock,
            check=self._watch.check,
        )

    @property
    def db(self) -> aiosqlite.Connection:
        """The writing connection: only ever used inside a BEGIN IMMEDIATE transaction
        (and by the migrations at open)."""
        if self._db is None:
            raise StoreUnavailable("store is not open")
        return self._db

    @property
    def reader(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise StoreUnavailable("store is not open")
        return self._reader

    async def open(self) -> None:
        """Connect and migrate. DatabaseLost if the database is missing or empty where
        the data directory's marker says there was one (unless a new one is allowed);
        SQLiteTooOld before anything is touched if the SQLite library is too old."""
        require_sqlite(sqlite3.sqlite_version_info)
        if self._marker is not None and not self._path.exists():
            self._marker.check_new()
        # Created private, before SQLite does: its -wal and -shm files copy the mode.
        await asyncio.to_thread(ensure_private_file, self._path)
        db = await aiosqlite.connect(self._path, isolation_level=None)
        self._watch.pin()
        db.row_factory = sqlite3.Row
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute(f"PRAGMA synchronous={self._synchronous}")
        await db.execute("PRAGMA foreign_keys=ON")
        await db.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        self._db = db
        try:
            await self._migrate()
            reader = await aiosqlite.connect(self._path, isolation_level=None)
            self._reader = reader
            reader.row_factory = sqlite3.Row
            await reader.execute("PRAGMA query_only=ON")
            await reader.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
            await self._inbox.open()
            if self._marker is not None and not self._marker.had_database():
                self._marker.write()
        except BaseException:
            await self.close()
            raise

    async def _migrate(self) -> None:
        migrations = load_migrations(self.dialect.name)
        async with self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ) as cur:
            versioned = await cur.fetchone() is not None
        current = 0
        if versioned:
            async with self.db.execute("SELECT MAX(version) FROM schema_version") as cur:
                row = await cur.fetchone()
            current = (row[0] if row else None) or 0
        if current == 0 and self._marker is not None:
            self._marker.check_new()
        await self.db.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at REAL)"
        )
        refuse_newer(current, len(migrations))
        for migration in migrations[current:]:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split_sql(migration.sql):
                    await self.db.execute(statement)
                await self.db.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, strftime('%s'))",
                    (migration.version,),
                )
                await self.db.execute("COMMIT")
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise

    async def schema_version(self) -> int:
        row = await self._one(jq.SCHEMA_VERSION)
        return int(row[0]) if row and row[0] is not None else 0

    async def close(self) -> None:
        await self._inbox.close()
        for name in ("_reader", "_db"):
            con: aiosqlite.Connection | None = getattr(self, name)
            if con is not None:
                setattr(self, name, None)
                await con.close()

    async def ping(self) -> None:
        self._watch.check()
        await self._one("SELECT 1")

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Tx]:
        """One write transaction at a time; StoreUnavailable if it cannot commit."""
        async with self._write_lock:
            db = self.db
            # Nothing is committed to a file that is no longer the database's.
            self._watch.check()
            try:
                await db.execute("BEGIN IMMEDIATE")
                try:
                    tx = _Tx(db)
                    yield tx
                    await db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        # A COMMIT cancelled while its thread ran may have finished
                        # anyway: then there is nothing to roll back.
                        with contextlib.suppress(sqlite3.OperationalError):
                            await db.execute("ROLLBACK")
                    raise
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"database write failed: {exc}") from exc
        if tx.announce:
            self.events_written.notify()

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """One read, run to its end in a single call on the reading connection, so
        its snapshot closes with it (nothing else can run on that connection meanwhile)."""
        try:
            rows = await self.reader.execute_fetchall(sql, params)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"database read failed: {exc}") from exc
        return list(rows)

    async def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._transaction() as tx:
            return await tx.execute(sql, params)

    def _conflict(self, exc: Exception) -> Conflict | None:
        if not isinstance(exc, sqlite3.IntegrityError):
            return None
        # "UNIQUE constraint failed: jobs.provider, jobs.provider_job_id"
        message = str(exc)
        if "jobs.idempotency_key" in message:
            return "idempotency_key"
        if "provider_job_id" in message:
            return "provider_job_id"
        return None

    # what only this database does -------------------------------------------

    def append_received(self, new: NewDelivery) -> Awaitable[None]:
        return self._inbox.write(new)

    async def record_delivery(self, new: NewDelivery) -> Delivery:
        async with self._transaction() as tx:
            seen = await tx.fetch_one(iq.SEEN, (new.dedupe_key,)) is not None
            status = DeliveryStatus.DUPLICATE if seen else DeliveryStatus.PENDING
            await tx.execute(iq.INSERT_DELIVERY, delivery_values(new, status))
        return new.stored(status)

    async def lease_due(self, *, now: datetime, lease_s: float, limit: int) -> list[Job]:
        # Read on the reading connection first: no write at all when nothing is due.
        ts = now.timestamp()
        picked = await self._all(jq.PICK_DUE, (ts, *jq.DUE, ts, limit))
        if not picked:
            return []
        ids = [r["id"] for r in picked]
        async with self._transaction() as tx:
            leased = await tx.fetch_all(
                f"""UPDATE jobs SET lease_until = ? WHERE id IN ({jq.marks(ids)})
                    AND (lease_until IS NULL OR lease_until <= ?) RETURNING *""",
                (ts + lease_s, *ids, ts),
            )
        return in_due_order(leased, now)

    async def lease_outbound(
        self, *, now: datetime, lease_s: float, limit: int
    ) -> list[OutboundTask]:
        """Due deliveries whose earlier events (same subscription and job) are settled,
        and none of whose job's deliveries is in flight (the rule of both stores).
        Read first on the reading connection: no write at all when nothing is due."""
        ts = now.timestamp()
        rows = await self._all(oq.pick_ready(oq.TASK_COLUMNS), (ts, ts, ts, limit))
        if not rows:
            return []
        ids = [r["o_id"] for r in rows]
        await self._execute(
            f"UPDATE outbound SET lease_until = ? WHERE id IN ({jq.marks(ids)}) "
            "AND (lease_until IS NULL OR lease_until <= ?)",
            (ts + lease_s, *ids, ts),
        )
        return [row_to_task(r) for r in rows]


class _Tx:
    """A write transaction on the writing connection."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self.announce = False

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = await self._db.execute(sql, params)
        count = cur.rowcount
        await cur.close()
        return count

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        # Every row read, so the statement is done before the next one (or COMMIT).
        async with self._db.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
