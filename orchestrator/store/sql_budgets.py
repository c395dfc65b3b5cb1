"""Provider budgets in the SQL store: sliding windows and cooldowns, one row per
call granted, shared by every process that uses the database.

Each decision is one write transaction; the connector serialises the takers of
one budget (SQLite's single writer, an advisory lock on PostgreSQL). The
arithmetic is ``orchestrator.domain.budget_window``'s.
"""

from __future__ import annotations

from datetime import datetime

from orchestrator.domain import budget_window
from orchestrator.store import budget_queries as q
from orchestrator.store.connector import Connector


class SqlBudgets(Connector):
    async def take_budget(
        self,
        provider: str,
        kind: str,
        windows: list[tuple[int, float]],
        *,
        now: datetime,
        cooldown_s: float = 0.0,
    ) -> float:
        """Take one call if every window has room, no cooldown is active and the
        last call is at least ``cooldown_s`` old: return 0. Else the seconds to wait."""
        ts = now.timestamp()
        key = (provider, kind)
        async with self._transaction() as tx:
            await self._lock_budget(tx, provider, kind)
            cooldown = await tx.fetch_one(q.COOLDOWN, key)
            recent: dict[int, float] = {}
            for rank in budget_window.ranks(windows, cooldown_s):
                row = await tx.fetch_one(q.CALL_AT_RANK, (*key, rank - 1))
                if row is None:
                    break  # fewer calls than this rank, so than every later one
                recent[rank] = float(row[0])
            wait = budget_window.wait_s(
                now=ts,
                windows=windows,
                cooldown_s=cooldown_s,
                cooldown_until=None if cooldown is None else float(cooldown[0]),
                recent=recent,
            )
            if wait > 0:
                return wait
            horizon = budget_window.horizon_s(windows, cooldown_s)
            if horizon > 0:
                await tx.execute(q.PRUNE, (*key, ts - horizon))
                await tx.execute(q.INSERT_CALL, (*key, ts))
            return 0.0

    async def count_budget_calls(self, provider: str, kind: str, *, since: datetime) -> int:
        """How many calls of this kind to this provider were granted after ``since``."""
        row = await self._one(q.COUNT_CALLS, (provider, kind, since.timestamp()))
        return int(row[0]) if row is not None else 0

    async def cool_down_budget(self, provider: str, kind: str, *, until: datetime) -> None:
        """No call of this kind to this provider before ``until`` (a later cooldown stays)."""
        await self._execute(q.cool_down(self.dialect), (provider, kind, until.timestamp()))
