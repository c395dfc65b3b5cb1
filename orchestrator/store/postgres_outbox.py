"""Outbox verbs of the PostgreSQL store: the event feed, subscriptions, outbound deliveries."""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

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
from orchestrator.store.postgres_conn import EVENTS_LOCK, LOCK_NS, Row, Tx, affected
from orchestrator.store.rows import dt, req_dt, row_to_event, row_to_subscription, secrets_json


class PostgresOutbox:
    """Mixed into PostgresStore, which provides the connection helpers below."""

    @abstractmethod
    def _transaction(self) -> AbstractAsyncContextManager[Tx]: ...

    @abstractmethod
    async def _one(self, sql: str, *params: object) -> Row | None: ...

    @abstractmethod
    async def _all(self, sql: str, *params: object) -> list[Row]: ...

    # the event feed ---------------------------------------------------------

    async def list_events(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        types: Sequence[str] | None = None,
        job_id: str | None = None,
    ) -> list[EventRecord]:
        clauses = ["seq > $1"]
        params: list[Any] = [after]
        if types:
            params.append(list(types))
            clauses.append(f"type = ANY(${len(params)}::text[])")
        if job_id is not None:
            params.append(job_id)
            clauses.append(f"job_id = ${len(params)}")
        params.append(limit)
        rows = await self._all(
            f"SELECT * FROM events WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT ${len(params)}",
            *params,
        )
        return [row_to_event(r) for r in rows]

    async def get_event(self, seq: int) -> EventRecord | None:
        row = await self._one("SELECT * FROM events WHERE seq = $1", seq)
        return None if row is None else row_to_event(row)

    async def last_event_seq(self) -> int:
        row = await self._one("SELECT MAX(seq) FROM events")
        return int(row[0]) if row is not None and row[0] is not None else 0

    # subscriptions ------------------------------------------------------------

    async def create_subscription(self, subscription: Subscription) -> Subscription:
        async with self._transaction() as tx:
            await tx.conn.execute(
                """INSERT INTO subscriptions (id, url, types, job_id, secrets, created_at)
                   VALUES ($1, $2, $3, $4, $5, $6)""",
                subscription.id,
                subscription.url,
                json.dumps(list(subscription.types)) if subscription.types else None,
                subscription.job_id,
                secrets_json(subscription.secrets),
                subscription.created_at.timestamp(),
            )
        return subscription

    async def get_subscription(self, subscription_id: str) -> Subscription | None:
        row = await self._one("SELECT * FROM subscriptions WHERE id = $1", subscription_id)
        return None if row is None else row_to_subscription(row)

    async def list_subscriptions(self, *, include_job_hooks: bool = False) -> list[Subscription]:
        where = "" if include_job_hooks else "WHERE job_id IS NULL"
        rows = await self._all(f"SELECT * FROM subscriptions {where} ORDER BY created_at, id")
        return [row_to_subscription(r) for r in rows]

    async def job_subscription(self, job_id: str) -> Subscription | None:
        row = await self._one(
            "SELECT * FROM subscriptions WHERE job_id = $1 ORDER BY created_at, id LIMIT 1",
            job_id,
        )
        return None if row is None else row_to_subscription(row)

    async def delete_subscription(self, subscription_id: str, *, now: datetime) -> bool:
        async with self._transaction() as tx:
            # Event writers fan out to subscriptions under this lock: taking it
            # first means none of them is inserting a delivery to this one now.
            await tx.conn.execute("SELECT pg_advisory_xact_lock($1, $2)", LOCK_NS, EVENTS_LOCK)
            await tx.conn.execute(
                "UPDATE outbound SET status = 'cancelled', next_attempt_at = NULL "
                "WHERE subscription_id = $1 AND status = 'pending'",
                subscription_id,
            )
            await tx.conn.execute(
                "DELETE FROM outbound_attempts WHERE outbound_id IN "
                "(SELECT id FROM outbound WHERE subscription_id = $1)",
                subscription_id,
            )
            await tx.conn.execute(
                "DELETE FROM outbound WHERE subscription_id = $1", subscription_id
            )
            status = await tx.conn.execute(
                "DELETE FROM subscriptions WHERE id = $1", subscription_id
            )
            return affected(status) == 1

    async def set_subscription_secrets(
        self, subscription_id: str, secrets: Sequence[SigningSecret]
    ) -> None:
        async with self._transaction() as tx:
            await tx.conn.execute(
                "UPDATE subscriptions SET secrets = $1 WHERE id = $2",
                secrets_json(secrets),
                subscription_id,
            )

    async def enable_subscription(self, subscription_id: str) -> None:
        async with self._transaction() as tx:
            await tx.conn.execute(
                "UPDATE subscriptions SET disabled_at = NULL, disabled_reason = NULL, "
                "consecutive_failures = 0 WHERE id = $1",
                subscription_id,
            )

    # outbound deliveries ---------------------------------------------------------

    async def lease_outbound(
        self, *, now: datetime, lease_s: float, limit: int
    ) -> list[OutboundTask]:
        """Due deliveries whose earlier events (same subscription and job) are settled.

        Across workers: rows another worker is leasing right now are skipped
        (SKIP LOCKED), and a delivery waits while any other delivery of its job to
        its subscription is earlier and pending, or is leased (in flight).
        """
        ts = now.timestamp()
        rows = await self._all_in_transaction(
            """WITH picked AS (
                   SELECT o.id FROM outbound o
                   JOIN subscriptions s ON s.id = o.subscription_id
                   WHERE o.status = 'pending' AND o.next_attempt_at <= $1
                     AND (o.lease_until IS NULL OR o.lease_until <= $1)
                     AND s.disabled_at IS NULL
                     AND NOT EXISTS (
                         SELECT 1 FROM outbound p
                         WHERE p.subscription_id = o.subscription_id AND p.job_id = o.job_id
                           AND p.id <> o.id AND p.status = 'pending'
                           AND (p.event_seq < o.event_seq OR p.lease_until > $1))
                   ORDER BY o.next_attempt_at, o.event_seq
                   LIMIT $3
                   FOR UPDATE OF o SKIP LOCKED),
               leased AS (
                   UPDATE outbound SET lease_until = $2 FROM picked
                   WHERE outbound.id = picked.id
                   RETURNING outbound.id, outbound.attempts, outbound.event_seq,
                             outbound.subscription_id, outbound.next_attempt_at)
               SELECT l.id AS o_id, l.attempts AS o_attempts,
                      e.seq AS e_seq, e.type AS e_type, e.job_id AS e_job_id,
                      e.created_at AS e_created_at, e.body AS e_body, s.*
               FROM leased l
               JOIN events e ON e.seq = l.event_seq
               JOIN subscriptions s ON s.id = l.subscription_id
               ORDER BY l.next_attempt_at, l.event_seq""",
            ts,
            ts + lease_s,
            limit,
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

    async def _all_in_transaction(self, sql: str, *params: object) -> list[Row]:
        async with self._transaction() as tx:
            return await tx.conn.fetch(sql, *params)

    async def next_outbound_due_at(self) -> datetime | None:
        """When ``lease_outbound`` may next hand something out. A delivery behind an
        earlier pending one of its job counts only through that one; one whose job
        has a delivery in flight, no sooner than that lease runs out."""
        row = await self._one(
            """SELECT MIN(GREATEST(o.next_attempt_at, COALESCE(
                          (SELECT MAX(f.lease_until) FROM outbound f
                           WHERE f.subscription_id = o.subscription_id AND f.job_id = o.job_id
                             AND f.status = 'pending'), 0)))
               FROM outbound o JOIN subscriptions s ON s.id = o.subscription_id
               WHERE o.status = 'pending' AND o.next_attempt_at IS NOT NULL
                 AND s.disabled_at IS NULL
                 AND NOT EXISTS (
                     SELECT 1 FROM outbound p
                     WHERE p.subscription_id = o.subscription_id AND p.job_id = o.job_id
                       AND p.event_seq < o.event_seq AND p.status = 'pending')"""
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
        async with self._transaction() as tx:
            await tx.conn.execute(
                """INSERT INTO outbound_attempts (outbound_id, at, status_code, error, duration_ms)
                   VALUES ($1, $2, $3, $4, $5)""",
                outbound_id,
                ts,
                status_code,
                error,
                duration_ms,
            )
            await tx.conn.execute(
                """UPDATE outbound SET status = $1, attempts = attempts + 1, lease_until = NULL,
                   next_attempt_at = $2, last_status = $3, last_error = $4, delivered_at = $5
                   WHERE id = $6""",
                status.value,
                retry_at.timestamp() if retry_at else None,
                status_code,
                error,
                ts if ok else None,
                outbound_id,
            )
            if ok:
                await tx.conn.execute(
                    "UPDATE subscriptions SET consecutive_failures = 0 WHERE id = $1",
                    subscription_id,
                )
            else:
                await tx.conn.execute(
                    """UPDATE subscriptions SET consecutive_failures = consecutive_failures + 1,
                       disabled_at = CASE WHEN consecutive_failures + 1 >= $1::integer
                                          AND disabled_at IS NULL THEN $2::float8
                                          ELSE disabled_at END,
                       disabled_reason = CASE WHEN consecutive_failures + 1 >= $1::integer
                                          AND disabled_at IS NULL
                                          THEN 'too many failed deliveries in a row'
                                          ELSE disabled_reason END
                       WHERE id = $3""",
                    disable_after,
                    ts,
                    subscription_id,
                )
        return status

    async def redeliver(
        self, seq: int, *, now: datetime, subscription_id: str | None = None
    ) -> int:
        """Queue an event again for one subscription, or for every subscription it went to."""
        ts = now.timestamp()
        async with self._transaction() as tx:
            if subscription_id is not None:
                status = await tx.conn.execute(
                    """INSERT INTO outbound (event_seq, subscription_id, job_id, status,
                           next_attempt_at, created_at)
                       SELECT e.seq, s.id, e.job_id, 'pending', $1::float8, $2::float8
                       FROM events e, subscriptions s
                       WHERE e.seq = $3 AND s.id = $4""",
                    ts,
                    ts,
                    seq,
                    subscription_id,
                )
            else:
                status = await tx.conn.execute(
                    """INSERT INTO outbound (event_seq, subscription_id, job_id, status,
                           next_attempt_at, created_at)
                       SELECT DISTINCT event_seq, subscription_id, job_id, 'pending',
                              $1::float8, $2::float8
                       FROM outbound WHERE event_seq = $3""",
                    ts,
                    ts,
                    seq,
                )
            return affected(status)

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
            params.append(subscription_id)
            clauses.append(f"o.subscription_id = ${len(params)}")
        if event_seq is not None:
            params.append(event_seq)
            clauses.append(f"o.event_seq = ${len(params)}")
        if status is not None:
            params.append(status.value)
            clauses.append(f"o.status = ${len(params)}")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(limit)
        rows = await self._all(
            f"""SELECT o.*, e.type AS event_type FROM outbound o
                JOIN events e ON e.seq = o.event_seq {where}
                ORDER BY o.id DESC LIMIT ${len(params)}""",
            *params,
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
            "SELECT * FROM outbound_attempts WHERE outbound_id = $1 ORDER BY id", outbound_id
        )
        return [
            AttemptRecord(
                at=req_dt(r["at"]),
                status_code=r["status_code"],
                error=r["error"],
                duration_ms=r["duration_ms"],
            )
            for r in rows
        ]
