"""Provider budgets shared by every process, kept in PostgreSQL."""

from __future__ import annotations

from abc import abstractmethod
from contextlib import AbstractAsyncContextManager
from datetime import datetime

from orchestrator.store.postgres_conn import BUDGET_NS, Tx


class PostgresBudgets:
    """Mixed into PostgresStore: sliding windows and cooldowns, one row per call granted.

    Each (provider, kind) is decided under its own transaction-level advisory
    lock, so concurrent takers in any number of processes are serialised.
    """

    @abstractmethod
    def _transaction(self) -> AbstractAsyncContextManager[Tx]: ...

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
        limited = [(limit, period) for limit, period in windows if limit > 0]
        if not limited and cooldown_s <= 0:
            horizon = 0.0
        else:
            horizon = max([cooldown_s, *(period for _, period in limited)])
        async with self._transaction() as tx:
            conn = tx.conn
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2::text || '/' || $3::text))",
                BUDGET_NS,
                provider,
                kind,
            )
            until = await conn.fetchval(
                "SELECT until FROM budget_cooldowns WHERE provider = $1 AND kind = $2",
                provider,
                kind,
            )
            waits = [0.0, (until - ts) if until is not None else 0.0]
            for limit, period in limited:
                since = ts - period
                count = await conn.fetchval(
                    "SELECT COUNT(*) FROM budget_calls "
                    "WHERE provider = $1 AND kind = $2 AND at > $3",
                    provider,
                    kind,
                    since,
                )
                if count >= limit:
                    # The window has room again when enough of its oldest calls age out.
                    pivot = await conn.fetchval(
                        "SELECT at FROM budget_calls WHERE provider = $1 AND kind = $2 "
                        "AND at > $3 ORDER BY at OFFSET $4 LIMIT 1",
                        provider,
                        kind,
                        since,
                        count - limit,
                    )
                    waits.append(float(pivot) + period - ts)
            if cooldown_s > 0:
                last = await conn.fetchval(
                    "SELECT MAX(at) FROM budget_calls WHERE provider = $1 AND kind = $2",
                    provider,
                    kind,
                )
                if last is not None:
                    waits.append(float(last) + cooldown_s - ts)
            wait = max(waits)
            if wait > 0:
                return wait
            if horizon > 0:
                await conn.execute(
                    "DELETE FROM budget_calls WHERE provider = $1 AND kind = $2 AND at <= $3",
                    provider,
                    kind,
                    ts - horizon,
                )
                await conn.execute(
                    "INSERT INTO budget_calls (provider, kind, at) VALUES ($1, $2, $3)",
                    provider,
                    kind,
                    ts,
                )
            return 0.0

    async def cool_down_budget(self, provider: str, kind: str, *, until: datetime) -> None:
        """No call of this kind to this provider before ``until`` (a later cooldown stays)."""
        async with self._transaction() as tx:
            await tx.conn.execute(
                """INSERT INTO budget_cooldowns (provider, kind, until) VALUES ($1, $2, $3)
                   ON CONFLICT (provider, kind)
                   DO UPDATE SET until = GREATEST(budget_cooldowns.until, EXCLUDED.until)""",
                provider,
                kind,
                until.timestamp(),
            )
