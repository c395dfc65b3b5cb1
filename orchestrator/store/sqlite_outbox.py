"""Outbox verbs of the SQLite store: the event feed, subscriptions, outbound deliveries."""

from __future__ import annotations

import json
import sqlite3
from abc import abstractmethod
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from orchestrator.events import event_id
from orchestrator.store.outbox import (
    AttemptRecord,
    EventRecord,
    OutboundRecord,
    OutboundStatus,
    OutboundTask,
    SigningSecret,
    Subscription,
)
from orchestrator.store.rows import dt, row_to_event, row_to_subscription, secrets_json


class SQLiteOutbox:
    """Mixed into SQLiteStore, which provides the connection helpers below."""

    @abstractmethod
    def _transaction(self) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...

    @abstractmethod
    async def _one(self, sql: str, params: Sequence[Any]) -> sqlite3.Row | None: ...

    @abstractmethod
    async def _all(self, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]: ...

    # the event feed ---------------------------------------------------------

    async def list_events(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        types: Sequence[str] | None = None,
        job_id: str | None = None,
    ) -> list[EventRecord]:
        clauses = ["seq > ?"]
        params: list[Any] = [after]
        if types:
            clauses.append(f"type IN ({', '.join('?' for _ in types)})")
            params.extend(types)
        if job_id is not None:
            clauses.append("job_id = ?")
            params.append(job_id)
        rows = await self._all(
            f"SELECT * FROM events WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT ?",
            (*params, limit),
        )
        return [row_to_event(r) for r in rows]

    async def get_event(self, seq: int) -> EventRecord | None:
        row = await self._one("SELECT * FROM events WHERE seq = ?", (seq,))
        return None if row is None else row_to_event(row)

    async def last_event_seq(self) -> int:
        row = await self._one("SELECT MAX(seq) FROM events", ())
        return int(row[0]) if row is not None and row[0] is not None else 0

    # subscriptions ------------------------------------------------------------

    async def create_subscription(self, subscription: Subscription) -> Subscription:
        async with self._transaction() as db:
            await db.execute(
                """INSERT INTO subscriptions (id, url, types, job_id, secrets, created_at)
                   VALUES (?, ?, ?, ?, ?, ?)""",
                (
                    subscription.id,
                    subscription.url,
                    json.dumps(list(subscription.types)) if subscription.types else None,
                    subscription.job_id,
                    secrets_json(subscription.secrets),
                    subscription.created_at.timestamp(),
                ),
            )
        return subscription

    async def get_subscription(self, subscription_id: str) -> Subscription | None:
        row = await self._one("SELECT * FROM subscriptions WHERE id = ?", (subscription_id,))
        return None if row is None else row_to_subscription(row)

    async def list_subscriptions(self, *, include_job_hooks: bool = False) -> list[Subscription]:
        where = "" if include_job_hooks else "WHERE job_id IS NULL"
        rows = await self._all(f"SELECT * FROM subscriptions {where} ORDER BY created_at", ())
        return [row_to_subscription(r) for r in rows]

    async def job_subscription(self, job_id: str) -> Subscription | None:
        row = await self._one(
            "SELECT * FROM subscriptions WHERE job_id = ? ORDER BY created_at LIMIT 1", (job_id,)
        )
        return None if row is None else row_to_subscription(row)

    async def delete_subscription(self, subscription_id: str, *, now: datetime) -> bool:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE outbound SET status = 'cancelled', next_attempt_at = NULL "
                "WHERE subscription_id = ? AND status = 'pending'",
                (subscription_id,),
            )
            await db.execute(
                "DELETE FROM outbound_attempts WHERE outbound_id IN "
                "(SELECT id FROM outbound WHERE subscription_id = ?)",
                (subscription_id,),
            )
            await db.execute("DELETE FROM outbound WHERE subscription_id = ?", (subscription_id,))
            cur = await db.execute("DELETE FROM subscriptions WHERE id = ?", (subscription_id,))
            return cur.rowcount == 1

    async def set_subscription_secrets(
        self, subscription_id: str, secrets: Sequence[SigningSecret]
    ) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE subscriptions SET secrets = ? WHERE id = ?",
                (secrets_json(secrets), subscription_id),
            )

    async def enable_subscription(self, subscription_id: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE subscriptions SET disabled_at = NULL, disabled_reason = NULL, "
                "consecutive_failures = 0 WHERE id = ?",
                (subscription_id,),
            )

    # outbound deliveries ---------------------------------------------------------

    async def lease_outbound(
        self, *, now: datetime, lease_s: float, limit: int
    ) -> list[OutboundTask]:
        """Due deliveries whose earlier events (same subscription and job) are settled,
        and none of whose job's deliveries is in flight (the rule of both stores)."""
        ts = now.timestamp()
        rows = await self._all(
            """SELECT o.id AS o_id, o.attempts AS o_attempts,
                      e.seq AS e_seq, e.type AS e_type, e.job_id AS e_job_id,
                      e.created_at AS e_created_at, e.body AS e_body, s.*
               FROM outbound o
               JOIN events e ON e.seq = o.event_seq
               JOIN subscriptions s ON s.id = o.subscription_id
               WHERE o.status = 'pending' AND o.next_attempt_at <= ?
                 AND (o.lease_until IS NULL OR o.lease_until <= ?)
                 AND s.disabled_at IS NULL
                 AND NOT EXISTS (
                     SELECT 1 FROM outbound p
                     WHERE p.subscription_id = o.subscription_id AND p.job_id = o.job_id
                       AND p.id <> o.id AND p.status = 'pending'
                       AND (p.event_seq < o.event_seq OR p.lease_until > ?))
               ORDER BY o.next_attempt_at, o.event_seq LIMIT ?""",
            (ts, ts, ts, limit),
        )
        if not rows:
            return []
        ids = [r["o_id"] for r in rows]
        marks = ", ".join("?" for _ in ids)
        async with self._transaction() as db:
            await db.execute(
                f"UPDATE outbound SET lease_until = ? WHERE id IN ({marks}) "
                "AND (lease_until IS NULL OR lease_until <= ?)",
                (ts + lease_s, *ids, ts),
            )
        return [
            OutboundTask(
                id=r["o_id"],
                event=row_to_event(r, "e_"),
                subscription=row_to_subscription(r),
                attempts=r["o_attempts"],
            )
            for r in rows
        ]

    async def next_outbound_due_at(self) -> datetime | None:
        """When ``lease_outbound`` may next hand something out. A delivery behind an
        earlier pending one of its job counts only through that one; one whose job
        has a delivery in flight, no sooner than that lease runs out."""
        row = await self._one(
            """SELECT MIN(MAX(o.next_attempt_at, COALESCE(
                          (SELECT MAX(f.lease_until) FROM outbound f
                           WHERE f.subscription_id = o.subscription_id AND f.job_id = o.job_id
                             AND f.status = 'pending'), 0)))
               FROM outbound o JOIN subscriptions s ON s.id = o.subscription_id
               WHERE o.status = 'pending' AND o.next_attempt_at IS NOT NULL
                 AND s.disabled_at IS NULL
                 AND NOT EXISTS (
                     SELECT 1 FROM outbound p
                     WHERE p.subscription_id = o.subscription_id AND p.job_id = o.job_id
                       AND p.event_seq < o.event_seq AND p.status = 'pending')""",
            (),
        )
        return dt(row[0]) if row is not None else None

    async def record_attempt(
        self,
        outbound_id: int,
        subscription_id: str,
        *,
        now: datetime,
        ok: bool,
        status_code: int | None,
        error: str | None,
        duration_ms: float,
        retry_at: datetime | None,
        disable_after: int,
    ) -> OutboundStatus:
        """Record one attempt. Not ok and no ``retry_at``: the delivery is dead.
        A subscription failing ``disable_after`` times in a row is disabled."""
        ts = now.timestamp()
        status = OutboundStatus.after_attempt(ok=ok, will_retry=retry_at is not None)
        async with self._transaction() as db:
            await db.execute(
                """INSERT INTO outbound_attempts (outbound_id, at, status_code, error, duration_ms)
                   VALUES (?, ?, ?, ?, ?)""",
                (outbound_id, ts, status_code, error, duration_ms),
            )
            await db.execute(
                """UPDATE outbound SET status = ?, attempts = attempts + 1, lease_until = NULL,
                   next_attempt_at = ?, last_status = ?, last_error = ?, delivered_at = ?
                   WHERE id = ?""",
                (
                    status.value,
                    retry_at.timestamp() if retry_at else None,
                    status_code,
                    error,
                    ts if ok else None,
                    outbound_id,
                ),
            )
            if ok:
                await db.execute(
                    "UPDATE subscriptions SET consecutive_failures = 0 WHERE id = ?",
                    (subscription_id,),
                )
            else:
                await db.execute(
                    """UPDATE subscriptions SET consecutive_failures = consecutive_failures + 1,
                       disabled_at = CASE WHEN consecutive_failures + 1 >= ?
                                          AND disabled_at IS NULL THEN ? ELSE disabled_at END,
                       disabled_reason = CASE WHEN consecutive_failures + 1 >= ?
                                          AND disabled_at IS NULL
                                          THEN 'too many failed deliveries in a row'
                                          ELSE disabled_reason END
                       WHERE id = ?""",
                    (disable_after, ts, disable_after, subscription_id),
                )
        return status

    async def redeliver(
        self, seq: int, *, now: datetime, subscription_id: str | None = None
    ) -> int:
        """Queue an event again for one subscription, or for every subscription it went to."""
        async with self._transaction() as db:
            if subscription_id is not None:
                cur = await db.execute(
                    """INSERT INTO outbound (event_seq, subscription_id, job_id, status,
                           next_attempt_at, created_at)
                       SELECT e.seq, s.id, e.job_id, 'pending', ?, ? FROM events e, subscriptions s
                       WHERE e.seq = ? AND s.id = ?""",
                    (now.timestamp(), now.timestamp(), seq, subscription_id),
                )
            else:
                cur = await db.execute(
                    """INSERT INTO outbound (event_seq, subscription_id, job_id, status,
                           next_attempt_at, created_at)
                       SELECT DISTINCT event_seq, subscription_id, job_id, 'pending', ?, ?
                       FROM outbound WHERE event_seq = ?""",
                    (now.timestamp(), now.timestamp(), seq),
                )
            return cur.rowcount

    async def list_outbound(
        self,
        *,
        subscription_id: str | None = None,
        event_seq: int | None = None,
        status: OutboundStatus | None = None,
        limit: int = 100,
    ) -> list[OutboundRecord]:
        clauses: list[str] = []
        params: list[Any] = []
        if subscription_id is not None:
            clauses.append("o.subscription_id = ?")
            params.append(subscription_id)
        if event_seq is not None:
            clauses.append("o.event_seq = ?")
            params.append(event_seq)
        if status is not None:
            clauses.append("o.status = ?")
            params.append(status.value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self._all(
            f"""SELECT o.*, e.type AS event_type FROM outbound o
                JOIN events e ON e.seq = o.event_seq {where}
                ORDER BY o.id DESC LIMIT ?""",
            (*params, limit),
        )
        return [
            OutboundRecord(
                id=r["id"],
                event_id=event_id(r["event_seq"]),
                event_type=r["event_type"],
                job_id=r["job_id"],
                subscription_id=r["subscription_id"],
                status=OutboundStatus(r["status"]),
                attempts=r["attempts"],
                next_attempt_at=dt(r["next_attempt_at"]),
                last_status=r["last_status"],
                last_error=r["last_error"],
                delivered_at=dt(r["delivered_at"]),
            )
            for r in rows
        ]

    async def attempts(self, outbound_id: int) -> list[AttemptRecord]:
        rows = await self._all(
            "SELECT * FROM outbound_attempts WHERE outbound_id = ? ORDER BY id", (outbound_id,)
        )
        return [
            AttemptRecord(
                at=datetime.fromtimestamp(r["at"], UTC),
                status_code=r["status_code"],
                error=r["error"],
                duration_ms=r["duration_ms"],
            )
            for r in rows
        ]
