"""Provider health (cool-downs) and daily spend in the SQL store, shared by every
worker on the database.

Each change of a provider's health is one write transaction that reads the row,
applies a pure function of ``orchestrator.domain.cooldown`` and writes it back;
the connector serialises the writers of one provider (SQLite's single writer, an
advisory lock on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from orchestrator.domain import cooldown
from orchestrator.domain.cooldown import CooldownPolicy, Health
from orchestrator.store import routing_queries as q
from orchestrator.store.connector import Connector, Row
from orchestrator.store.protocol import DailySpend
from orchestrator.store.rows import dt, ts
from orchestrator.store.sql_jobs import spend_day

T = TypeVar("T")


def row_to_health(row: Row) -> Health:
    return Health(
        provider=row["provider"],
        failures=row["failures"],
        cooldown_s=float(row["cooldown_s"]),
        until=dt(row["until"]),
        probe_job=row["probe_job"],
        probe_until=dt(row["probe_until"]),
        total_failures=row["total_failures"],
        cooldowns=row["cooldowns"],
    )


class SqlRouting(Connector):
    async def _change_health(
        self, provider: str, change: Callable[[Health], tuple[T, Health]]
    ) -> T:
        async with self._transaction() as tx:
            await self._lock_budget(tx, provider, "health")
            row = await tx.fetch_one(q.HEALTH, (provider,))
            before = row_to_health(row) if row is not None else Health(provider)
            answer, after = change(before)
            if after != before:
                await tx.execute(
                    q.PUT_HEALTH,
                    (
                        provider,
                        after.failures,
                        after.cooldown_s,
                        ts(after.until),
                        after.probe_job,
                        ts(after.probe_until),
                        after.total_failures,
                        after.cooldowns,
                    ),
                )
        return answer

    async def provider_health(self) -> dict[str, Health]:
        return {r["provider"]: row_to_health(r) for r in await self._all(q.ALL_HEALTH)}

    async def admit_provider(
        self, provider: str, job_id: str, *, now: datetime, policy: CooldownPolicy
    ) -> bool:
        return await self._change_health(provider, lambda h: cooldown.admit(h, job_id, now, policy))

    async def record_provider_result(
        self, provider: str, *, ok: bool, now: datetime, policy: CooldownPolicy
    ) -> Health:
        if ok:
            # The common case, a success of a healthy provider, changes nothing: one
            # read, no write transaction on every submit.
            row = await self._one(q.HEALTH, (provider,))
            seen = row_to_health(row) if row is not None else Health(provider)
            if cooldown.succeeded(seen) == seen:
                return seen

        def change(h: Health) -> tuple[Health, Health]:
            after = cooldown.succeeded(h) if ok else cooldown.failed(h, now, policy)
            return after, after

        return await self._change_health(provider, change)

    async def spend_today(self, *, now: datetime) -> dict[str, DailySpend]:
        rows = await self._all(q.SPEND_OF_DAY, (spend_day(now),))
        return {r["provider"]: DailySpend(float(r["credits"]), int(r["jobs"])) for r in rows}
