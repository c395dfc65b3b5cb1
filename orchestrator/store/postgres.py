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
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from orchestrator.events import Snapshot, default_snapshot, envelope, event_type
from orchestrator.signals import Broadcast
from orchestrator.states import DUE_STATES, Event, has_due_work
from orchestrator.store.inbox_sql import (
    MARK_DELIVERY,
    MATCH_CALLBACK,
    STRANDED_WAITING,
    mark_params,
    match_params,
    numbered,
    stranded_params,
)
from orchestrator.store.migrate import SchemaNotReady, SchemaTooNew, load_migrations
from orchestrator.store.postgres_budgets import PostgresBudgets
from orchestrator.store.postgres_conn import (
    DEDUPE_NS,
    EVENTS_CHANNEL,
    EVENTS_LOCK,
    LOCK_NS,
    MIGRATE_LOCK,
    Conn,
    Pool,
    Row,
    Tx,
    UniqueViolation,
    affected,
    create_pool,
    one_connection,
    translated,
)
from orchestrator.store.postgres_listener import ChannelListener
from orchestrator.store.postgres_outbox import PostgresOutbox
from orchestrator.store.protocol import (
    CallbackMatch,
    Changes,
    Delivery,
    DeliveryMark,
    DeliveryStatus,
    HistoryEntry,
    NewDelivery,
    NewJob,
    TransitionListener,
)
from orchestrator.store.rows import (
    DELIVERY_COLUMNS,
    column_values,
    delivery_values,
    dt,
    provider_job_id_taken,
    req_dt,
    request_hash,
    row_to_delivery,
    row_to_job,
    row_to_match,
)
from schemas.errors import IdempotencyConflict, StoreUnavailable
from schemas.jobs import Job, JobState

DIALECT = "postgres"

_DUE_STATES = [state.value for state in DUE_STATES]
_IDEMPOTENCY_CONSTRAINT = "jobs_idempotency_key_key"
_PROVIDER_JOB_CONSTRAINT = "jobs_provider_job"
_MATCH_CALLBACK = numbered(MATCH_CALLBACK)
_MARK_DELIVERY = numbered(MARK_DELIVERY)
_STRANDED_WAITING = numbered(STRANDED_WAITING)


class PostgresStore(PostgresOutbox, PostgresBudgets):
    """A connection pool, plus one connection that listens for other processes' events."""

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
            wanted = len(load_migrations(DIALECT))
            if current < wanted:
                raise SchemaNotReady(
                    f"database schema is at version {current}, this release needs {wanted}: "
                    "run `upscale db migrate`"
                )
            if current > wanted:
                raise SchemaTooNew(
                    f"database schema {current} is newer than this release knows "
                    f"({wanted}); upgrade the service"
                )
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
        migrations = load_migrations(DIALECT)
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
                    if current > len(migrations):
                        raise SchemaTooNew(
                            f"database schema {current} is newer than this release knows "
                            f"({len(migrations)}); upgrade the service"
                        )
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
                tx = Tx(conn)
                yield tx
        if tx.emitted:
            self.events_written.notify()

    async def _one(self, sql: str, *params: object) -> Row | None:
        with translated("read"):
            async with self.pool.acquire() as conn:
                return await conn.fetchrow(sql, *params)

    async def _all(self, sql: str, *params: object) -> list[Row]:
        with translated("read"):
            async with self.pool.acquire() as conn:
                return await conn.fetch(sql, *params)

    async def _execute(self, sql: str, *params: object) -> int:
        """One statement in its own transaction; the rows it touched."""
        with translated("write"):
            async with self.pool.acquire() as conn:
                return affected(await conn.execute(sql, *params))

    async def _emit(self, tx: Tx, from_state: JobState | None, job: Job, now: datetime) -> None:
        """Write the event of a transition (if it is one) inside its transaction,
        and one outbound delivery per subscription that wants it."""
        kind = event_type(from_state, job.state)
        if kind is None:
            return
        body = envelope(kind, now, self._snapshot(job))
        ts = now.timestamp()
        # Held until commit: the next writer's seq is drawn after ours is visible.
        await tx.conn.execute("SELECT pg_advisory_xact_lock($1, $2)", LOCK_NS, EVENTS_LOCK)
        seq = await tx.conn.fetchval(
            "INSERT INTO events (type, job_id, created_at, body) "
            "VALUES ($1, $2, $3, $4) RETURNING seq",
            kind,
            job.id,
            ts,
            body,
        )
        await tx.conn.execute(
            """INSERT INTO outbound (event_seq, subscription_id, job_id, status,
                   next_attempt_at, created_at)
               SELECT $1::bigint, s.id, $2::text, 'pending', $3::float8, $3::float8
               FROM subscriptions s
               WHERE s.disabled_at IS NULL
                 AND (s.job_id IS NULL OR s.job_id = $2::text)
                 AND (s.types IS NULL OR (s.types::jsonb) ? $4::text)""",
            seq,
            job.id,
            ts,
            kind,
        )
        await tx.conn.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, self._token)
        tx.emitted = True

    # jobs -----------------------------------------------------------------

    async def create_job(self, new: NewJob) -> tuple[Job, bool]:
        digest = new.request_hash or request_hash(new)
        if new.idempotency_key is not None:
            existing = await self._one(
                "SELECT * FROM jobs WHERE idempotency_key = $1", new.idempotency_key
            )
            if existing is not None:
                if existing["request_hash"] != digest:
                    raise IdempotencyConflict(
                        "this Idempotency-Key was used with a different request"
                    )
                return row_to_job(existing), False
        now = new.created_at.timestamp()
        try:
            async with self._transaction() as tx:
                row = await tx.conn.fetchrow(
                    """INSERT INTO jobs (id, provider, state, scale, options, metadata,
                       input_url, input_key, idempotency_key, request_hash, created_at,
                       updated_at, deadline_at, next_check_at, retry_of)
                       VALUES ($1, $2, 'queued', $3, $4, $5, $6, $7, $8, $9, $10, $10, $11,
                               $10, $12)
                       RETURNING *""",
                    new.id,
                    new.provider,
                    new.scale,
                    json.dumps(new.options),
                    json.dumps(new.metadata),
                    new.input_url,
                    new.input_key,
                    new.idempotency_key,
                    digest,
                    now,
                    new.deadline_at.timestamp(),
                    new.retry_of,
                )
                assert row is not None
                await tx.conn.execute(
                    """INSERT INTO job_history (job_id, at, from_state, to_state, event, cause)
                       VALUES ($1, $2, NULL, 'queued', 'created', 'api')""",
                    new.id,
                    now,
                )
                created = row_to_job(row)
                await self._emit(tx, None, created, new.created_at)
        except UniqueViolation as exc:
            # Two requests with the same key raced; the other one won.
            constraint = getattr(exc, "constraint_name", None)
            if new.idempotency_key is None or constraint != _IDEMPOTENCY_CONSTRAINT:
                raise
            return await self.create_job(new)
        return created, True

    async def get_job(self, job_id: str) -> Job | None:
        row = await self._one("SELECT * FROM jobs WHERE id = $1", job_id)
        return None if row is None else row_to_job(row)

    async def find_job(self, provider: str, provider_job_id: str) -> Job | None:
        row = await self._one(
            "SELECT * FROM jobs WHERE provider = $1 AND provider_job_id = $2",
            provider,
            provider_job_id,
        )
        return None if row is None else row_to_job(row)

    async def list_jobs(
        self,
        *,
        state: JobState | None = None,
        provider: str | None = None,
        after: str | None = None,
        limit: int = 50,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> list[Job]:
        clauses: list[str] = []
        params: list[Any] = []

        def where(clause: str, value: Any) -> None:
            params.append(value)
            clauses.append(clause.replace("?", f"${len(params)}"))

        if state is not None:
            where("state = ?", state.value)
        if provider is not None:
            where("provider = ?", provider)
        if after is not None:
            where("id < ?", after)
        if created_after is not None:
            where("created_at >= ?", created_after.timestamp())
        if created_before is not None:
            where("created_at < ?", created_before.timestamp())
        condition = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(limit)
        rows = await self._all(
            f"SELECT * FROM jobs {condition} ORDER BY id DESC LIMIT ${len(params)}", *params
        )
        return [row_to_job(r) for r in rows]

    async def apply_transition(
        self,
        job: Job,
        event: Event,
        to_state: JobState,
        *,
        cause: str,
        changes: Changes | None = None,
        now: datetime,
        mark: DeliveryMark | None = None,
    ) -> Job | None:
        changes = changes or Changes()
        values = column_values(changes)
        if not has_due_work(to_state):
            values["next_check_at"] = None
        values["state"] = to_state.value
        values["updated_at"] = now.timestamp()
        values.setdefault("lease_until", None)
        assignments = ", ".join(f"{k} = ${i}" for i, k in enumerate(values, start=1))
        n = len(values)
        detail = json.dumps(changes.detail) if changes.detail else None
        async with self._transaction() as tx:
            try:
                row = await tx.conn.fetchrow(
                    f"UPDATE jobs SET {assignments}, version = version + 1 "
                    f"WHERE id = ${n + 1} AND version = ${n + 2} RETURNING *",
                    *values.values(),
                    job.id,
                    job.version,
                )
            except UniqueViolation as exc:
                if getattr(exc, "constraint_name", None) != _PROVIDER_JOB_CONSTRAINT:
                    raise
                raise provider_job_id_taken(job, changes) from exc
            if row is None:
                return None
            await tx.conn.execute(
                """INSERT INTO job_history (job_id, at, from_state, to_state, event, cause,
                   detail) VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                job.id,
                now.timestamp(),
                job.state.value,
                to_state.value,
                event.value,
                cause,
                detail,
            )
            done = row_to_job(row)
            await self._emit(tx, job.state, done, now)
            if mark is not None:
                await tx.conn.execute(_MARK_DELIVERY, *mark_params(mark))
        for listener in self.transition_listeners:
            listener(job, done, cause)
        return done

    async def update_job(
        self, job: Job, changes: Changes, *, now: datetime, mark: DeliveryMark | None = None
    ) -> Job | None:
        values = column_values(changes)
        values["updated_at"] = now.timestamp()
        values["lease_until"] = None
        assignments = ", ".join(f"{k} = ${i}" for i, k in enumerate(values, start=1))
        n = len(values)
        async with self._transaction() as tx:
            row = await tx.conn.fetchrow(
                f"UPDATE jobs SET {assignments}, version = version + 1 "
                f"WHERE id = ${n + 1} AND version = ${n + 2} RETURNING *",
                *values.values(),
                job.id,
                job.version,
            )
            if row is None:
                return None
            if mark is not None:
                await tx.conn.execute(_MARK_DELIVERY, *mark_params(mark))
        return row_to_job(row)

    async def lease_due(self, *, now: datetime, lease_s: float, limit: int) -> list[Job]:
        ts = now.timestamp()
        rows = await self._all(
            """WITH picked AS MATERIALIZED (
                   SELECT id FROM jobs
                   WHERE next_check_at IS NOT NULL AND next_check_at <= $1
                     AND state = ANY($2::text[])
                     AND (lease_until IS NULL OR lease_until <= $1)
                   ORDER BY next_check_at
                   LIMIT $3
                   FOR UPDATE SKIP LOCKED)
               UPDATE jobs SET lease_until = $4 FROM picked
               WHERE jobs.id = picked.id
               RETURNING jobs.*""",
            ts,
            _DUE_STATES,
            limit,
            ts + lease_s,
        )
        return sorted((row_to_job(r) for r in rows), key=lambda j: j.next_check_at or now)

    async def next_due_at(self) -> datetime | None:
        # The earliest of: the first unleased job in due order (an ordered index
        # read that stops at once), and the first lease to run out (few rows).
        free = await self._one(
            """SELECT next_check_at FROM jobs
               WHERE next_check_at IS NOT NULL AND state = ANY($1::text[])
                 AND (lease_until IS NULL OR lease_until <= next_check_at)
               ORDER BY next_check_at LIMIT 1""",
            _DUE_STATES,
        )
        held = await self._one(
            """SELECT MIN(lease_until) FROM jobs
               WHERE lease_until IS NOT NULL AND next_check_at IS NOT NULL
                 AND lease_until > next_check_at AND state = ANY($1::text[])""",
            _DUE_STATES,
        )
        times = [r[0] for r in (free, held) if r is not None and r[0] is not None]
        return dt(min(times)) if times else None

    async def interrupted_submissions(self, *, now: datetime) -> list[Job]:
        rows = await self._all(
            "SELECT * FROM jobs WHERE state = 'submitting' "
            "AND (lease_until IS NULL OR lease_until <= $1)",
            now.timestamp(),
        )
        return [row_to_job(r) for r in rows]

    async def lease_job(self, job: Job, *, now: datetime, lease_s: float) -> Job | None:
        """Hold one job (compare-and-set) for ``lease_s`` seconds."""
        row = await self._one(
            "UPDATE jobs SET lease_until = $1 WHERE id = $2 AND version = $3 RETURNING *",
            now.timestamp() + lease_s,
            job.id,
            job.version,
        )
        return None if row is None else row_to_job(row)

    async def clear_leases(self) -> None:
        """Single-process start-up only: with several processes, a lease may be live."""
        async with self._transaction() as tx:
            await tx.conn.execute("UPDATE jobs SET lease_until = NULL WHERE state != 'submitting'")
            await tx.conn.execute("UPDATE outbound SET lease_until = NULL WHERE status = 'pending'")

    async def history(self, job_id: str) -> list[HistoryEntry]:
        rows = await self._all("SELECT * FROM job_history WHERE job_id = $1 ORDER BY id", job_id)
        return [
            HistoryEntry(
                at=req_dt(r["at"]),
                from_state=JobState(r["from_state"]) if r["from_state"] else None,
                to_state=JobState(r["to_state"]),
                event=r["event"],
                cause=r["cause"],
                detail=json.loads(r["detail"]) if r["detail"] else None,
            )
            for r in rows
        ]

    # the inbox --------------------------------------------------------------

    async def record_delivery(self, new: NewDelivery) -> Delivery:
        async with self._transaction() as tx:
            # Two receivers storing the same delivery at once: one is the duplicate.
            await tx.conn.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2::text))", DEDUPE_NS, new.dedupe_key
            )
            existing = await tx.conn.fetchval(
                "SELECT 1 FROM deliveries WHERE dedupe_key = $1 LIMIT 1", new.dedupe_key
            )
            status = DeliveryStatus.DUPLICATE if existing is not None else DeliveryStatus.PENDING
            await tx.conn.execute(
                f"""INSERT INTO deliveries ({DELIVERY_COLUMNS})
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
                *delivery_values(new, status),
            )
        return new.stored(status)

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        row = await self._one("SELECT * FROM deliveries WHERE id = $1", delivery_id)
        return None if row is None else row_to_delivery(row)

    async def pending_deliveries(self, *, limit: int) -> list[Delivery]:
        rows = await self._all(
            "SELECT * FROM deliveries WHERE status = 'pending' AND processed_at IS NULL "
            "ORDER BY received_at, id LIMIT $1",
            limit,
        )
        return [row_to_delivery(r) for r in rows]

    async def stranded_waiting(self, *, limit: int) -> list[Delivery]:
        rows = await self._all(_STRANDED_WAITING, *stranded_params(limit))
        return [row_to_delivery(r) for r in rows]

    async def deliveries_waiting_for(
        self, job_id: str, provider: str, provider_job_id: str | None
    ) -> list[Delivery]:
        rows = await self._all(
            """SELECT * FROM deliveries WHERE status = 'pending'
               AND (claimed_job_id = $1 OR (provider = $2 AND provider_job_id = $3))
               ORDER BY received_at, id""",
            job_id,
            provider,
            provider_job_id,
        )
        return [row_to_delivery(r) for r in rows]

    async def match_callback(self, provider: str, provider_job_id: str) -> CallbackMatch:
        row = await self._one(_MATCH_CALLBACK, *match_params(provider, provider_job_id))
        return row_to_match(row)

    async def mark_delivery(
        self,
        delivery_id: str,
        status: DeliveryStatus,
        *,
        now: datetime,
        job_id: str | None = None,
        provider_job_id: str | None = None,
        error: str | None = None,
    ) -> None:
        mark = DeliveryMark(delivery_id, status, now, job_id, provider_job_id, error)
        await self._execute(_MARK_DELIVERY, *mark_params(mark))

    async def list_deliveries(
        self,
        *,
        status: DeliveryStatus | None = None,
        provider: str | None = None,
        since: datetime | None = None,
        job_id: str | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        clauses: list[str] = []
        params: list[Any] = []

        def where(clause: str, value: Any) -> None:
            params.append(value)
            clauses.append(clause.replace("?", f"${len(params)}"))

        if status is not None:
            where("status = ?", status.value)
        if provider is not None:
            where("provider = ?", provider)
        if since is not None:
            where("received_at >= ?", since.timestamp())
        if job_id is not None:
            where("job_id = ?", job_id)
        condition = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(limit)
        rows = await self._all(
            f"SELECT * FROM deliveries {condition} ORDER BY received_at DESC, id DESC "
            f"LIMIT ${len(params)}",
            *params,
        )
        return [row_to_delivery(r) for r in rows]

    async def requeue_delivery(self, delivery_id: str) -> None:
        await self._execute(
            "UPDATE deliveries SET status = 'pending', processed_at = NULL, error = NULL, "
            "replays = replays + 1 WHERE id = $1",
            delivery_id,
        )

    async def job_counts(self) -> dict[tuple[str, str], int]:
        rows = await self._all(
            "SELECT state, provider, COUNT(*) AS n FROM jobs GROUP BY state, provider"
        )
        return {(r["state"], r["provider"]): int(r["n"]) for r in rows}

    async def oldest_pending_outbound(self) -> datetime | None:
        row = await self._one(
            """SELECT MIN(o.created_at) FROM outbound o JOIN subscriptions s
               ON s.id = o.subscription_id
               WHERE o.status = 'pending' AND s.disabled_at IS NULL"""
        )
        return dt(row[0]) if row is not None else None

    async def count_stuck(self, *, created_before: datetime) -> int:
        row = await self._one(
            "SELECT COUNT(*) FROM jobs WHERE state = 'submitted' AND created_at < $1",
            created_before.timestamp(),
        )
        return int(row[0]) if row is not None else 0

    async def submitting(self, provider: str) -> bool:
        row = await self._one(
            "SELECT 1 FROM jobs WHERE state = 'submitting' AND provider = $1 LIMIT 1", provider
        )
        return row is not None

    async def expire_waiting(self, *, before: datetime, now: datetime) -> int:
        return await self._execute(
            """UPDATE deliveries SET status = 'unmatched', processed_at = $1,
               error = 'no job of ours claimed this callback'
               WHERE status = 'pending' AND job_id IS NULL AND claimed_job_id IS NULL
               AND processed_at IS NOT NULL AND received_at < $2""",
            now.timestamp(),
            before.timestamp(),
        )

    async def count_deliveries(self, status: DeliveryStatus | None = None) -> int:
        if status is None:
            row = await self._one("SELECT COUNT(*) FROM deliveries")
        else:
            row = await self._one("SELECT COUNT(*) FROM deliveries WHERE status = $1", status.value)
        return int(row[0]) if row else 0
