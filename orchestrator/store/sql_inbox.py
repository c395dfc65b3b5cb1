"""The callback inbox verbs of the SQL store, written once for SQLite and PostgreSQL.

Storing a delivery is each connector's own: SQLite commits them in groups on a
connection of its own, PostgreSQL under an advisory lock per dedupe key.
"""

from __future__ import annotations

from datetime import datetime

from orchestrator.store import inbox_queries as q
from orchestrator.store.connector import Connector
from orchestrator.store.job_queries import where
from orchestrator.store.protocol import CallbackMatch, Delivery, DeliveryMark, DeliveryStatus
from orchestrator.store.rows import row_to_delivery, row_to_match


class SqlInbox(Connector):
    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        row = await self._one(q.DELIVERY_BY_ID, (delivery_id,))
        return None if row is None else row_to_delivery(row)

    async def pending_deliveries(self, *, limit: int) -> list[Delivery]:
        rows = await self._all(q.PENDING, (limit,))
        return [row_to_delivery(r) for r in rows]

    async def stranded_waiting(self, *, limit: int) -> list[Delivery]:
        rows = await self._all(q.STRANDED_WAITING, q.stranded_params(limit))
        return [row_to_delivery(r) for r in rows]

    async def deliveries_waiting_for(
        self, job_id: str, provider: str, provider_job_id: str | None
    ) -> list[Delivery]:
        rows = await self._all(q.WAITING_FOR, (job_id, provider, provider_job_id))
        return [row_to_delivery(r) for r in rows]

    async def match_callback(self, provider: str, provider_job_id: str) -> CallbackMatch:
        row = await self._one(q.MATCH_CALLBACK, q.match_params(provider, provider_job_id))
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
        await self._execute(q.MARK_DELIVERY, q.mark_params(mark))

    async def list_deliveries(
        self,
        *,
        status: DeliveryStatus | None = None,
        provider: str | None = None,
        since: datetime | None = None,
        job_id: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[Delivery]:
        clause, params = where(
            [
                ("status = ?", status.value if status is not None else None),
                ("provider = ?", provider),
                ("received_at >= ?", since.timestamp() if since is not None else None),
                ("job_id = ?", job_id),
                (q.AFTER_DELIVERY, after),
            ]
        )
        rows = await self._all(q.list_deliveries(clause), (*params, limit))
        return [row_to_delivery(r) for r in rows]

    async def requeue_delivery(self, delivery_id: str) -> None:
        await self._execute(q.REQUEUE, (delivery_id,))

    async def expire_waiting(self, *, before: datetime, now: datetime) -> int:
        return await self._execute(q.EXPIRE_WAITING, (now.timestamp(), before.timestamp()))

    async def count_deliveries(
        self,
        status: DeliveryStatus | None = None,
        *,
        since: datetime | None = None,
        provider: str | None = None,
    ) -> int:
        clause, params = where(
            [
                ("status = ?", status.value if status is not None else None),
                ("provider = ?", provider),
                ("received_at >= ?", since.timestamp() if since is not None else None),
            ]
        )
        row = await self._one(q.count_deliveries(clause), tuple(params))
        return int(row[0]) if row else 0
