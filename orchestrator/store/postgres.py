"""The Store on PostgreSQL (asyncpg): several processes share jobs, leases and budgets.

Same verbs and semantics as the SQLite store. What several processes add:

- leases are taken with ``FOR UPDATE SKIP LOCKED``, so two workers never hold
  the same job or outbound delivery;
- event sequence numbers follow commit order: writers take a transaction-level
  advisory lock just before inserting an event and hold it to their commit, so
  a reader paging by ``seq`` never skips an event that commits later;
- a committed event is announced with ``NOTIFY`` so followers in every process
  wake, not only in the one that wrote it;
- the schema is migrated on purpose (``migrate()``, ``upscale db migrate``),
  never by ``open()``, which refuses a database that is behind or ahead.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from orchestrator.common.signals import Broadcast
from orchestrator.domain.events import Snapshot, default_snapshot
from orchestrator.store import job_queries as jq
from orchestrator.store import outbox_queries as oq
from orchestrator.store.connector import Conflict, Row, Tx
from orchestrator.store.dialect import POSTGRES
from orchestrator.store.inbox_queries import INSERT_DELIVERY, SEEN
from orchestrator.store.migrate import SchemaNotReady, load_migrations, refuse_newer
from orchestrator.store.outbox import OutboundTask
from orchestrator.store.postgres_conn import (
    BUDGET_NS,
    DEDUPE_NS,
    EVENTS_CHANNEL,
    EVENTS_LOCK,
    LOCK_NS,
    MIGRATE_LOCK,
    RECEIVED_LOCK,
    Conn,
    PgTx,
    Pool,
    UniqueViolation,
    create_pool,
    one_connection,
    translated,
)
from orchestrator.store.postgres_inbox import ReceivedWriter
from orchestrator.store.postgres_listener import ChannelListener
from orchestrator.store.protocol import Delivery, DeliveryStatus, NewDelivery, TransitionListener
from orchestrator.store.rows import delivery_values
from orchestrator.store.sql import SqlStore
from orchestrator.store.sql_jobs import in_due_order
from orchestrator.store.sql_outbox import row_to_task
from schemas.errors import StoreUnavailable
from schemas.jobs import Job

# The unique constraints a verb handles, by name.
_CONFLICTS: dict[str, Conflict] = {
    "jobs_idempotency_key_key": "idempotency_key",
    "jobs_provider_job": "provider_job_id",
}

# Leases due jobs no other worker is leasing right now, in one statement.
_LEASE_DUE = f"""
    WITH picked AS MATERIALIZED ({jq.PICK_DUE} FOR UPDATE SKIP LOCKED)
    UPDATE jobs SET lease_until = ? FROM picked
    WHERE jobs.id = picked.id
    RETURNING jobs.*
"""

# Leases ready deliveries no other worker is leasing right now, in one statement;
# a delivery waits while another of its job to its subscription is earlier and
# pending, or is leased (in flight).
_LEASE_OUTBOUND = f"""
    WITH picked AS ({oq.pick_ready("o.id")} FOR UPDATE OF o SKIP LOCKED),
    leased AS (
        UPDATE outbound SET lease_until = ? FROM picked
        WHERE outbound.id = picked.id
        RETURNING outbound.id, outbound.attempts, outbound.event_seq,
                  outbound.subscription_id, outbound.next_attempt_at)
    SELECT {oq.TASK_COLUMNS}
    FROM leased o
    JOIN events e ON e.seq = o.event_seq
    JOIN subscriptions s ON s.id = o.subscription_id
    ORDER BY {oq.READY_ORDER}
"""


class PostgresStore(SqlStore):
    """A connection pool, plus one connection that listens for other processes' events."""

    dialect = POSTGRES

    def __init__(
        self,
        dsn: str,
        *,
        snapshot: Snapshot = default_snapshot,
        min_size: int = 1,
        max_size: int = 10,
    ) -> None:
        self._dsn = dsn
        self._snapshot = snapshot
        self._min_size = min_size
        self._max_size = max_size
        # Set whenever an event is committed, here or in another process.
        self.events_written = Broadcast()
        # Told of every transition committed by this process: (before, after, cause).
        self.transition_listeners: list[TransitionListener] = []
        self._pool: Pool | None = None
        self._listener: ChannelListener | None = None
        # Our own NOTIFYs carry this token: this process was told at commit already.
        self._token = secrets.token_hex(8)
        # Incoming callbacks are committed in groups.
        self._received = ReceivedWriter(lambda: self.pool)

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            raise StoreUnavailable("store is not open")
        return self._pool

    # lifecycle ------------------------------------------------------------

    async def open(self) -> None:
        """Connect, check the schema version, start listening for events.

        Does not migrate: SchemaNotReady if the database is behind this release,
        SchemaTooNew if it is ahead."""
        self._pool = await create_pool(self._dsn, min_size=self._min_size, max_size=self._max_size)
        try:
            current = await self.schema_version()
            wanted = len(load_migrations(self.dialect.name))
            if current < wanted:
                raise SchemaNotReady(
                    f"database schema is at version {current}, this release needs {wanted}: "
                    "run `upscale db migrate`"
                )
            refuse_newer(current, wanted)
            listener = ChannelListener(
                self._dsn,
                EVENTS_CHANNEL,
                self._on_event_notice,
                on_reconnect=self.events_written.notify,
            )
            await listener.start()
            self._listener = listener
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self._received.close()
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.stop()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=10.0)
            except TimeoutError:
                pool.terminate()

    async def migrate(self) -> int:
        """Apply pending migrations (safe with several processes at once); the new version."""
        migrations = load_migrations(self.dialect.name)
        async with self._connection() as conn:
            with translated("migration"):
                async with conn.transaction():
                    await conn.execute(
                        "SELECT pg_advisory_xact_lock($1, $2)", LOCK_NS, MIGRATE_LOCK
                    )
                    await conn.execute(
                        "CREATE TABLE IF NOT EXISTS schema_version "
                        "(version INTEGER NOT NULL, applied_at DOUBLE PRECISION)"
                    )
                    current = int(
                        await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
                    )
                    refuse_newer(current, len(migrations))
                    for migration in migrations[current:]:
                        await conn.execute(migration.sql)
                        await conn.execute(
                            "INSERT INTO schema_version (version, applied_at) "
                            "VALUES ($1, extract(epoch FROM now()))",
                            migration.version,
                        )
        return max(current, len(migrations))

    async def schema_version(self) -> int:
        async with self._connection() as conn:
            with translated("read"):
                exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
                if not exists:
                    return 0
                value = await conn.fetchval("SELECT MAX(version) FROM schema_version")
        return int(value) if value is not None else 0

    async def ping(self) -> None:
        await self._one("SELECT 1")

    def _on_event_notice(self, payload: str) -> None:
        if payload != self._token:
            self.events_written.notify()

    # connection helpers -------------------------------------------------------

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Conn]:
        """A pooled connection when open; else one of its own (migrating before open)."""
        if self._pool is None:
            async with one_connection(self._dsn) as conn:
                yield conn
            return
        with translated("connect"):
            async with self._pool.acquire() as conn:
                yield conn

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Tx]:
        """One transaction on a pooled connection; StoreUnavailable if it cannot commit.
        Integrity errors pass through for the caller to handle."""
        with translated("write"):
            async with self.pool.acquire() as conn, conn.transaction():
                tx = PgTx(conn)
                yield tx
        if tx.announce:
            self.events_written.notify()

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        with translated("read"):
            async with self.pool.acquire() as conn:
                return await PgTx(conn).fetch_one(sql, params)

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with translated("read"):
            async with self.pool.acquire() as conn:
                return await PgTx(conn).fetch_all(sql, params)

    async def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement in its own transaction; the rows it touched."""
        with translated("write"):
            async with self.pool.acquire() as conn:
                return await PgTx(conn).execute(sql, params)

    def _conflict(self, exc: Exception) -> Conflict | None:
        if not isinstance(exc, UniqueViolation):
            return None
        return _CONFLICTS.get(getattr(exc, "constraint_name", None) or "")

    async def _lock_events(self, tx: Tx) -> None:
        # Held until commit: the next writer's seq is drawn after ours is visible.
        await tx.execute("SELECT pg_advisory_xact_lock(?, ?)", (LOCK_NS, EVENTS_LOCK))

    async def _lock_budget(self, tx: Tx, provider: str, kind: str) -> None:
        await tx.execute(
            "SELECT pg_advisory_xact_lock(?, hashtext(CAST(? AS text) || '/' || CAST(? AS text)))",
            (BUDGET_NS, provider, kind),
        )

    async def _announce(self, tx: Tx) -> None:
        # Delivered at commit to every process listening, this one included.
        await tx.execute("SELECT pg_notify(?, ?)", (EVENTS_CHANNEL, self._token))
        tx.announce = True

    # what only this database does -------------------------------------------

    async def _lock_received(self, tx: Tx) -> None:
        await tx.execute("SELECT pg_advisory_xact_lock(?, ?)", (LOCK_NS, RECEIVED_LOCK))

    async def append_received(self, new: NewDelivery) -> None:
        await self._received.write(new)

    async def record_delivery(self, new: NewDelivery) -> Delivery:
        async with self._transaction() as tx:
            # Two receivers storing the same delivery at once: one is the duplicate.
            await tx.execute(
                "SELECT pg_advisory_xact_lock(?, hashtext(CAST(? AS text)))",
                (DEDUPE_NS, new.dedupe_key),
            )
            seen = await tx.fetch_one(SEEN, (new.dedupe_key,)) is not None
            status = DeliveryStatus.DUPLICATE if seen else DeliveryStatus.PENDING
            await tx.execute(INSERT_DELIVERY, delivery_values(new, status))
        return new.stored(status)

    async def lease_due(self, *, now: datetime, lease_s: float, limit: int) -> list[Job]:
        ts = now.timestamp()
        async with self._transaction() as tx:
            rows = await tx.fetch_all(_LEASE_DUE, (ts, *jq.DUE, ts, limit, ts + lease_s))
        return in_due_order(rows, now)

    async def lease_outbound(
        self, *, now: datetime, lease_s: float, limit: int
    ) -> list[OutboundTask]:
        """Due deliveries whose earlier events (same subscription and job) are settled.
        Across workers: rows another worker is leasing right now are skipped."""
        ts = now.timestamp()
        async with self._transaction() as tx:
            rows = await tx.fetch_all(_LEASE_OUTBOUND, (ts, ts, ts, limit, ts + lease_s))
        return [row_to_task(r) for r in rows]
