"""The outbox verbs of the SQL store (the event feed, subscriptions, outbound
deliveries), written once for SQLite and PostgreSQL.

Leasing due deliveries is each connector's own (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL), over the shared ``READY`` condition.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from orchestrator.domain.events import event_id
from orchestrator.store import outbox_queries as q
from orchestrator.store.connector import Connector, Row
from orchestrator.store.job_queries import marks, where
from orchestrator.store.outbox import (
    AttemptRecord,
    EventRecord,
    OutboundRecord,
    OutboundStatus,
    OutboundTask,
    SigningSecret,
    Subscription,
)
from orchestrator.store.rows import dt, req_dt, row_to_event, row_to_subscription, secrets_json


def row_to_task(row: Row) -> OutboundTask:
    """A leased delivery from a row of ``TASK_COLUMNS``."""
    return OutboundTask(
        id=row["o_id"],
        event=row_to_event(row, "e_"),
        subscription=row_to_subscription(row),
        attempts=row["o_attempts"],
    )


class SqlOutbox(Connector):
    # the event feed ---------------------------------------------------------

    async def list_events(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        types: Sequence[str] | None = None,
        job_id: str | None = None,
    ) -> list[EventRecord]:
        clause, params = where([("seq > ?", after), ("job_id = ?", job_id)])
        if types:
            clause += f" AND type IN ({marks(types)})"
            params.extend(types)
        rows = await self._all(q.list_events(clause), (*params, limit))
        return [row_to_event(r) for r in rows]

    async def get_event(self, seq: int) -> EventRecord | None:
        row = await self._one(q.EVENT_BY_SEQ, (seq,))
        return None if row is None else row_to_event(row)

    async def last_event_seq(self) -> int:
        row = await self._one(q.LAST_EVENT_SEQ)
        return int(row[0]) if row is not None and row[0] is not None else 0

    # subscriptions ------------------------------------------------------------

    async def create_subscription(self, subscription: Subscription) -> Subscription:
        await self._execute(
            q.INSERT_SUBSCRIPTION,
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
        row = await self._one(q.SUBSCRIPTION_BY_ID, (subscription_id,))
        return None if row is None else row_to_subscription(row)

    async def list_subscriptions(self, *, include_job_hooks: bool = False) -> list[Subscription]:
        rows = await self._all(q.list_subscriptions(include_job_hooks=include_job_hooks))
        return [row_to_subscription(r) for r in rows]

    async def job_subscription(self, job_id: str) -> Subscription | None:
        row = await self._one(q.JOB_SUBSCRIPTION, (job_id,))
        return None if row is None else row_to_subscription(row)

    async def delete_subscription(self, subscription_id: str, *, now: datetime) -> bool:
        async with self._transaction() as tx:
            # Event writers fan out to subscriptions under this lock: taking it first
            # means none of them is inserting a delivery to this one now.
            await self._lock_events(tx)
            await tx.execute(q.CANCEL_PENDING, (subscription_id,))
            await tx.execute(q.DELETE_ATTEMPTS, (subscription_id,))
            await tx.execute(q.DELETE_OUTBOUND, (subscription_id,))
            return await tx.execute(q.DELETE_SUBSCRIPTION, (subscription_id,)) == 1

    async def set_subscription_secrets(
        self, subscription_id: str, secrets: Sequence[SigningSecret]
    ) -> None:
        await self._execute(q.SET_SECRETS, (secrets_json(secrets), subscription_id))

    async def enable_subscription(self, subscription_id: str) -> None:
        """Deliver to it again; its pending deliveries are due at once (the dispatcher
        is woken when this commits)."""
        async with self._transaction() as tx:
            await tx.execute(q.ENABLE, (subscription_id,))
            await self._announce(tx)

    # outbound deliveries ---------------------------------------------------------

    async def next_outbound_due_at(self) -> datetime | None:
        row = await self._one(q.next_outbound_due(self.dialect))
        return dt(row[0]) if row is not None else None

    async def oldest_pending_outbound(self) -> datetime | None:
        row = await self._one(q.OLDEST_PENDING)
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
            await tx.execute(q.INSERT_ATTEMPT, (outbound_id, ts, status_code, error, duration_ms))
            await tx.execute(
                q.AFTER_ATTEMPT,
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
                await tx.execute(q.SUBSCRIPTION_OK, (subscription_id,))
            else:
                await tx.execute(
                    q.SUBSCRIPTION_FAILED, (disable_after, ts, disable_after, subscription_id)
                )
        return status

    async def redeliver(
        self, seq: int, *, now: datetime, subscription_id: str | None = None
    ) -> int:
        """Queue an event again for one subscription, or for every subscription it
        went to (the dispatcher is woken when this commits)."""
        ts = now.timestamp()
        async with self._transaction() as tx:
            if subscription_id is not None:
                queued = await tx.execute(q.REDELIVER_TO, (ts, ts, seq, subscription_id))
            else:
                queued = await tx.execute(q.REDELIVER_ALL, (ts, ts, seq))
            await self._announce(tx)
        return queued

    async def list_outbound(
        self,
        *,
        subscription_id: str | None = None,
        event_seq: int | None = None,
        status: OutboundStatus | None = None,
        limit: int = 100,
    ) -> list[OutboundRecord]:
        clause, params = where(
            [
                ("o.subscription_id = ?", subscription_id),
                ("o.event_seq = ?", event_seq),
                ("o.status = ?", status.value if status is not None else None),
            ]
        )
        rows = await self._all(q.list_outbound(clause), (*params, limit))
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
        rows = await self._all(q.ATTEMPTS, (outbound_id,))
        return [
            AttemptRecord(
                at=req_dt(r["at"]),
                status_code=r["status_code"],
                error=r["error"],
                duration_ms=r["duration_ms"],
            )
            for r in rows
        ]
