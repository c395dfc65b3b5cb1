"""The Store on SQLite (aiosqlite, WAL): the embedded default for one process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from orchestrator.events import Snapshot, default_snapshot, envelope, event_type
from orchestrator.private_files import ensure_private_file
from orchestrator.signals import Broadcast
from orchestrator.states import DUE_STATES, Event, has_due_work
from orchestrator.store.inbox_sql import (
    MARK_DELIVERY,
    MATCH_CALLBACK,
    STRANDED_WAITING,
    mark_params,
    match_params,
    stranded_params,
)
from orchestrator.store.migrate import SchemaTooNew, load_migrations
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
    column_values,
    dt,
    provider_job_id_taken,
    req_dt,
    request_hash,
    row_to_delivery,
    row_to_job,
    row_to_match,
)
from orchestrator.store.sqlite_budgets import SQLiteBudgets
from orchestrator.store.sqlite_file import DatabaseMarker, FileWatch
from orchestrator.store.sqlite_inbox import InboxWriter
from orchestrator.store.sqlite_outbox import SQLiteOutbox
from schemas.errors import IdempotencyConflict, StoreUnavailable
from schemas.jobs import Job, JobState

_DUE_STATES = tuple(state.value for state in DUE_STATES)


class SQLiteStore(SQLiteOutbox, SQLiteBudgets):
    """WAL journal, one writer at a time: the store's writing connection (aiosqlite)
    and the inbox writer's (incoming callbacks, committed in groups) take turns under
    one lock, each only in BEGIN IMMEDIATE transactions. Reads use a third, query-only
    connection. Writes stop once the file at the path is no longer the one opened."""

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
        self._emitted = False
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
        the data directory's marker says there was one (unless a new one is allowed)."""
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
        migrations = load_migrations("sqlite")
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
        if current > len(migrations):
            raise SchemaTooNew(
                f"database schema {current} is newer than this release knows "
                f"({len(migrations)}); upgrade the service"
            )
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
        row = await self._one("SELECT MAX(version) FROM schema_version", ())
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
        await self._one("SELECT 1", ())

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction at a time; StoreUnavailable if it cannot commit."""
        async with self._write_lock:
            db = self.db
            # Nothing is committed to a file that is no longer the database's.
            self._watch.check()
            try:
                await db.execute("BEGIN IMMEDIATE")
                try:
                    self._emitted = False
                    yield db
                    await db.execute("COMMIT")
                    if self._emitted:
                        self.events_written.notify()
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

    async def _write(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        """Run statements in one transaction; return each one's rowcount."""
        counts: list[int] = []
        async with self._transaction() as db:
            for sql, params in statements:
                cur = await db.execute(sql, params)
                counts.append(cur.rowcount)
                await cur.close()
        return counts

    async def _emit(
        self, db: aiosqlite.Connection, from_state: JobState | None, job: Job, now: datetime
    ) -> None:
        """Write the event of a transition (if it is one) inside its transaction,
        and one outbound delivery per subscription that wants it."""
        kind = event_type(from_state, job.state)
        if kind is None:
            return
        body = envelope(kind, now, self._snapshot(job))
        cur = await db.execute(
            "INSERT INTO events (type, job_id, created_at, body) VALUES (?, ?, ?, ?)",
            (kind, job.id, now.timestamp(), body),
        )
        seq = cur.lastrowid
        await cur.close()
        await db.execute(
            """INSERT INTO outbound (event_seq, subscription_id, job_id, status,
                   next_attempt_at, created_at)
               SELECT ?, s.id, ?, 'pending', ?, ? FROM subscriptions s
               WHERE s.disabled_at IS NULL
                 AND (s.job_id IS NULL OR s.job_id = ?)
                 AND (s.types IS NULL OR EXISTS (
                      SELECT 1 FROM json_each(s.types) WHERE json_each.value = ?))""",
            (seq, job.id, now.timestamp(), now.timestamp(), job.id, kind),
        )
        self._emitted = True

    async def _one(self, sql: str, params: Sequence[Any]) -> sqlite3.Row | None:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    async def _all(self, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        """One read, run to its end in a single call on the reading connection, so
        its snapshot closes with it (nothing else can run on that connection meanwhile)."""
        try:
            rows = await self.reader.execute_fetchall(sql, params)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"database read failed: {exc}") from exc
        return list(rows)

    # jobs -----------------------------------------------------------------

    async def create_job(self, new: NewJob) -> tuple[Job, bool]:
        digest = new.request_hash or request_hash(new)
        if new.idempotency_key is not None:
            existing = await self._one(
                "SELECT * FROM jobs WHERE idempotency_key = ?", (new.idempotency_key,)
            )
            if existing is not None:
                if existing["request_hash"] != digest:
                    raise IdempotencyConflict(
                        "this Idempotency-Key was used with a different request"
                    )
                return row_to_job(existing), False
        now = new.created_at.timestamp()
        try:
            async with self._transaction() as db:
                await db.execute(
                    """INSERT INTO jobs (id, provider, state, scale, options, metadata,
                       input_url, input_key, idempotency_key, request_hash, created_at,
                       updated_at, deadline_at, next_check_at, retry_of)
                       VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (
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
                        now,
                        new.deadline_at.timestamp(),
                        now,
                        new.retry_of,
                    ),
                )
                await db.execute(
                    """INSERT INTO job_history (job_id, at, from_state, to_state, event, cause)
                       VALUES (?, ?, NULL, 'queued', 'created', 'api')""",
                    (new.id, now),
                )
                async with db.execute("SELECT * FROM jobs WHERE id = ?", (new.id,)) as read:
                    row = await read.fetchone()
                assert row is not None
                created = row_to_job(row)
                await self._emit(db, None, created, new.created_at)
        except sqlite3.IntegrityError:
            # Two requests with the same key raced; the other one won.
            if new.idempotency_key is None:
                raise
            return await self.create_job(new)
        return created, True

    async def get_job(self, job_id: str) -> Job | None:
        row = await self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return None if row is None else row_to_job(row)

    async def find_job(self, provider: str, provider_job_id: str) -> Job | None:
        row = await self._one(
            "SELECT * FROM jobs WHERE provider = ? AND provider_job_id = ?",
            (provider, provider_job_id),
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
        if state is not None:
            clauses.append("state = ?")
            params.append(state.value)
        if provider is not None:
            clauses.append("provider = ?")
            params.append(provider)
        if after is not None:
            clauses.append("id < ?")
            params.append(after)
        if created_after is not None:
            clauses.append("created_at >= ?")
            params.append(created_after.timestamp())
        if created_before is not None:
            clauses.append("created_at < ?")
            params.append(created_before.timestamp())
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self._all(
            f"SELECT * FROM jobs {where} ORDER BY id DESC LIMIT ?", (*params, limit)
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
        assignments = ", ".join(f"{k} = ?" for k in values)
        detail = json.dumps(changes.detail) if changes.detail else None
        async with self._transaction() as db:
            try:
                cur = await db.execute(
                    f"UPDATE jobs SET {assignments}, version = version + 1 "
                    "WHERE id = ? AND version = ?",
                    (*values.values(), job.id, job.version),
                )
            except sqlite3.IntegrityError as exc:
                raise _taken(exc, job, changes) from exc
            if cur.rowcount != 1:
                return None
            await db.execute(
                """INSERT INTO job_history (job_id, at, from_state, to_state, event, cause,
                   detail) VALUES (?, ?, ?, ?, ?, ?, ?)""",
                (
                    job.id,
                    now.timestamp(),
                    job.state.value,
                    to_state.value,
                    event.value,
                    cause,
                    detail,
                ),
            )
            async with db.execute("SELECT * FROM jobs WHERE id = ?", (job.id,)) as read:
                row = await read.fetchone()
            assert row is not None
            done = row_to_job(row)
            await self._emit(db, job.state, done, now)
            if mark is not None:
                await db.execute(MARK_DELIVERY, mark_params(mark))
        for listener in self.transition_listeners:
            listener(job, done, cause)
        return done

    async def update_job(
        self, job: Job, changes: Changes, *, now: datetime, mark: DeliveryMark | None = None
    ) -> Job | None:
        values = column_values(changes)
        values["updated_at"] = now.timestamp()
        values["lease_until"] = None
        assignments = ", ".join(f"{k} = ?" for k in values)
        async with self._transaction() as db:
            cur = await db.execute(
                f"UPDATE jobs SET {assignments}, version = version + 1 "
                "WHERE id = ? AND version = ?",
                (*values.values(), job.id, job.version),
            )
            if cur.rowcount != 1:
                return None
            if mark is not None:
                await db.execute(MARK_DELIVERY, mark_params(mark))
        return await self.get_job(job.id)

    async def lease_due(self, *, now: datetime, lease_s: float, limit: int) -> list[Job]:
        ts = now.timestamp()
        marks = ", ".join("?" for _ in _DUE_STATES)
        rows = await self._all(
            f"""SELECT id FROM jobs WHERE next_check_at IS NOT NULL AND next_check_at <= ?
                AND state IN ({marks}) AND (lease_until IS NULL OR lease_until <= ?)
                ORDER BY next_check_at LIMIT ?""",
            (ts, *_DUE_STATES, ts, limit),
        )
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        id_marks = ", ".join("?" for _ in ids)
        await self._write(
            [
                (
                    f"""UPDATE jobs SET lease_until = ?
                        WHERE id IN ({id_marks}) AND (lease_until IS NULL OR lease_until <= ?)""",
                    (ts + lease_s, *ids, ts),
                )
            ]
        )
        leased = await self._all(
            f"SELECT * FROM jobs WHERE id IN ({id_marks}) AND lease_until = ?",
            (*ids, ts + lease_s),
        )
        return sorted((row_to_job(r) for r in leased), key=lambda j: j.next_check_at or now)

    async def next_due_at(self) -> datetime | None:
        # The earliest of: the first unleased job in due order (an ordered index
        # read that stops at once), and the first lease to run out (few rows).
        marks = ", ".join("?" for _ in _DUE_STATES)
        free = await self._one(
            f"""SELECT next_check_at FROM jobs INDEXED BY jobs_due
                WHERE next_check_at IS NOT NULL AND state IN ({marks})
                  AND (lease_until IS NULL OR lease_until <= next_check_at)
                ORDER BY next_check_at LIMIT 1""",
            _DUE_STATES,
        )
        held = await self._one(
            f"""SELECT MIN(lease_until) FROM jobs
                WHERE lease_until IS NOT NULL AND next_check_at IS NOT NULL
                  AND lease_until > next_check_at AND state IN ({marks})""",
            _DUE_STATES,
        )
        times = [r[0] for r in (free, held) if r is not None and r[0] is not None]
        return dt(min(times)) if times else None

    async def interrupted_submissions(self, *, now: datetime) -> list[Job]:
        rows = await self._all(
            "SELECT * FROM jobs WHERE state = 'submitting' "
            "AND (lease_until IS NULL OR lease_until <= ?)",
            (now.timestamp(),),
        )
        return [row_to_job(r) for r in rows]

    async def lease_job(self, job: Job, *, now: datetime, lease_s: float) -> Job | None:
        """Hold one job (compare-and-set) for ``lease_s`` seconds."""
        counts = await self._write(
            [
                (
                    "UPDATE jobs SET lease_until = ? WHERE id = ? AND version = ?",
                    (now.timestamp() + lease_s, job.id, job.version),
                )
            ]
        )
        return await self.get_job(job.id) if counts[0] == 1 else None

    async def clear_leases(self) -> None:
        await self._write(
            [
                ("UPDATE jobs SET lease_until = NULL WHERE state != 'submitting'", ()),
                ("UPDATE outbound SET lease_until = NULL WHERE status = 'pending'", ()),
            ]
        )

    async def history(self, job_id: str) -> list[HistoryEntry]:
        rows = await self._all("SELECT * FROM job_history WHERE job_id = ? ORDER BY id", (job_id,))
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
        return new.stored(await self._inbox.write(new))

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        row = await self._one("SELECT * FROM deliveries WHERE id = ?", (delivery_id,))
        return None if row is None else row_to_delivery(row)

    async def pending_deliveries(self, *, limit: int) -> list[Delivery]:
        rows = await self._all(
            "SELECT * FROM deliveries WHERE status = 'pending' AND processed_at IS NULL "
            "ORDER BY received_at LIMIT ?",
            (limit,),
        )
        return [row_to_delivery(r) for r in rows]

    async def stranded_waiting(self, *, limit: int) -> list[Delivery]:
        rows = await self._all(STRANDED_WAITING, stranded_params(limit))
        return [row_to_delivery(r) for r in rows]

    async def deliveries_waiting_for(
        self, job_id: str, provider: str, provider_job_id: str | None
    ) -> list[Delivery]:
        rows = await self._all(
            """SELECT * FROM deliveries WHERE status = 'pending'
               AND (claimed_job_id = ? OR (provider = ? AND provider_job_id = ?))
               ORDER BY received_at""",
            (job_id, provider, provider_job_id),
        )
        return [row_to_delivery(r) for r in rows]

    async def match_callback(self, provider: str, provider_job_id: str) -> CallbackMatch:
        row = await self._one(MATCH_CALLBACK, match_params(provider, provider_job_id))
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
        await self._write([(MARK_DELIVERY, mark_params(mark))])

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
        if status is not None:
            clauses.append("status = ?")
            params.append(status.value)
        if provider is not None:
            clauses.append("provider = ?")
            params.append(provider)
        if since is not None:
            clauses.append("received_at >= ?")
            params.append(since.timestamp())
        if job_id is not None:
            clauses.append("job_id = ?")
            params.append(job_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self._all(
            f"SELECT * FROM deliveries {where} ORDER BY received_at DESC, id DESC LIMIT ?",
            (*params, limit),
        )
        return [row_to_delivery(r) for r in rows]

    async def requeue_delivery(self, delivery_id: str) -> None:
        await self._write(
            [
                (
                    "UPDATE deliveries SET status = 'pending', processed_at = NULL, error = NULL, "
                    "replays = replays + 1 WHERE id = ?",
                    (delivery_id,),
                )
            ]
        )

    async def job_counts(self) -> dict[tuple[str, str], int]:
        rows = await self._all(
            "SELECT state, provider, COUNT(*) AS n FROM jobs GROUP BY state, provider", ()
        )
        return {(r["state"], r["provider"]): int(r["n"]) for r in rows}

    async def oldest_pending_outbound(self) -> datetime | None:
        row = await self._one(
            """SELECT MIN(o.created_at) FROM outbound o JOIN subscriptions s
               ON s.id = o.subscription_id
               WHERE o.status = 'pending' AND s.disabled_at IS NULL""",
            (),
        )
        return dt(row[0]) if row is not None else None

    async def count_stuck(self, *, created_before: datetime) -> int:
        row = await self._one(
            "SELECT COUNT(*) FROM jobs WHERE state = 'submitted' AND created_at < ?",
            (created_before.timestamp(),),
        )
        return int(row[0]) if row is not None else 0

    async def submitting(self, provider: str) -> bool:
        row = await self._one(
            "SELECT 1 FROM jobs WHERE state = 'submitting' AND provider = ? LIMIT 1", (provider,)
        )
        return row is not None

    async def expire_waiting(self, *, before: datetime, now: datetime) -> int:
        counts = await self._write(
            [
                (
                    """UPDATE deliveries SET status = 'unmatched', processed_at = ?,
                       error = 'no job of ours claimed this callback'
                       WHERE status = 'pending' AND job_id IS NULL AND claimed_job_id IS NULL
                       AND processed_at IS NOT NULL AND received_at < ?""",
                    (now.timestamp(), before.timestamp()),
                )
            ]
        )
        return counts[0]

    async def count_deliveries(self, status: DeliveryStatus | None = None) -> int:
        if status is None:
            row = await self._one("SELECT COUNT(*) FROM deliveries", ())
        else:
            row = await self._one(
                "SELECT COUNT(*) FROM deliveries WHERE status = ?", (status.value,)
            )
        return int(row[0]) if row else 0


def _taken(exc: sqlite3.IntegrityError, job: Job, changes: Changes) -> Exception:
    """The project's error for a provider job id another job holds; else ``exc`` itself."""
    if "provider_job_id" not in str(exc):
        return exc
    return provider_job_id_taken(job, changes)


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
