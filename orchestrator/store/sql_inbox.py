"""The callback inbox verbs of the SQL store, written once for SQLite and PostgreSQL.

Appending a callback as acknowledged (``append_received``) is each connector's
own: both commit them in groups. Filing them among the deliveries
(``admit_received``) is shared: one transaction takes the oldest, decides which
are duplicates (of a delivery filed before, or of an earlier one in the same
group), inserts them into ``deliveries`` and deletes them from ``received``.
"""

from __future__ import annotations

from datetime import datetime

from orchestrator.store import inbox_queries as q
from orchestrator.store.connector import Connector
from orchestrator.store.job_queries import where
from orchestrator.store.protocol import CallbackMatch, Delivery, DeliveryMark, DeliveryStatus
from orchestrator.store.rows import (
    delivery_values,
    row_to_delivery,
    row_to_match,
    row_to_received,
)


class SqlInbox(Connector):
    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        row = await self._one(q.DELIVERY_BY_ID, (delivery_id,))
        if row is not None:
            return row_to_delivery(row)
        # Acknowledged, not filed yet (a scan: the table holds only the newest few).
        received = await self._one(q.RECEIVED_BY_ID, (delivery_id,))
        if received is not None:
            return row_to_received(received).stored(DeliveryStatus.PENDING)
        # Filed between the two reads (filing moves a row in one transaction): it is
        # among the deliveries now. Without this look, an acknowledged callback read
        # at that moment would be "not found".
        row = await self._one(q.DELIVERY_BY_ID, (delivery_id,))
        return None if row is None else row_to_delivery(row)

    async def admit_received(self, *, limit: int) -> list[Delivery]:
        async with self._transaction() as tx:
            await self._lock_received(tx)
            rows = await tx.fetch_all(q.OLDEST_RECEIVED, (limit,))
            if not rows:
                return []
            news = [row_to_received(r) for r in rows]
            keys = list({new.dedupe_key for new in news})
            seen: set[str] = set()
            for at in range(0, len(keys), q.ROWS_PER_STATEMENT):
                some = keys[at : at + q.ROWS_PER_STATEMENT]
                seen.update(r[0] for r in await tx.fetch_all(q.seen_keys(len(some)), some))
            filed: list[Delivery] = []
            for new in news:
                duplicate = new.dedupe_key in seen
                seen.add(new.dedupe_key)
                filed.append(
                    new.stored(DeliveryStatus.DUPLICATE if duplicate else DeliveryStatus.PENDING)
                )
            for at in range(0, len(news), q.ROWS_PER_STATEMENT):
                some_news = news[at : at + q.ROWS_PER_STATEMENT]
                some_filed = filed[at : at + q.ROWS_PER_STATEMENT]
                values = [
                    v
                    for new, d in zip(some_news, some_filed, strict=True)
                    for v in delivery_values(new, d.status)
                ]
                statement = q.insert_rows(q.INSERT_DELIVERIES, q.DELIVERY_MARKS, len(some_news))
                await tx.execute(statement, values)
                seqs = [r["seq"] for r in rows[at : at + q.ROWS_PER_STATEMENT]]
                await tx.execute(q.forget_received(len(seqs)), seqs)
        return filed

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
        filters = [
            ("provider = ?", provider),
            ("received_at >= ?", since.timestamp() if since is not None else None),
        ]
        clause, params = where(
            [("status = ?", status.value if status is not None else None), *filters]
        )
        row = await self._one(q.count_deliveries(clause), tuple(params))
        count = int(row[0]) if row else 0
        if status is None or status is DeliveryStatus.PENDING:
            # Acknowledged, not filed yet: pending too.
            clause, params = where(filters)
            received = await self._one(q.count_received(clause), tuple(params))
            count += int(received[0]) if received else 0
        return count
