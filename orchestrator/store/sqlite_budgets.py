"""Provider budgets kept in SQLite: the same verbs and rules as the PostgreSQL store."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

import aiosqlite


async def _value(db: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> Any:
    async with db.execute(sql, params) as cur:
        row = await cur.fetchone()
    return None if row is None else row[0]


class SQLiteBudgets:
    """Mixed into SQLiteStore: sliding windows and cooldowns, one row per call granted.

    Each decision is one write transaction (BEGIN IMMEDIATE), so takers are
    serialised even across connections to the same file.
    """

    @abstractmethod
    def _transaction(self) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...

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
        key = (provider, kind)
        async with self._transaction() as db:
            until = await _value(
                db, "SELECT until FROM budget_cooldowns WHERE provider = ? AND kind = ?", key
            )
            waits = [0.0, (until - ts) if until is not None else 0.0]
            for limit, period in limited:
                since = ts - period
                count = await _value(
                    db,
                    "SELECT COUNT(*) FROM budget_calls WHERE provider = ? AND kind = ? AND at > ?",
                    (*key, since),
                )
                if count >= limit:
                    # The window has room again when enough of its oldest calls age out.
                    pivot = await _value(
                        db,
                        "SELECT at FROM budget_calls WHERE provider = ? AND kind = ? AND at > ? "
                        "ORDER BY at LIMIT 1 OFFSET ?",
                        (*key, since, count - limit),
                    )
                    waits.append(float(pivot) + period - ts)
            if cooldown_s > 0:
                last = await _value(
                    db, "SELECT MAX(at) FROM budget_calls WHERE provider = ? AND kind = ?", key
                )
                if last is not None:
                    waits.append(float(last) + cooldown_s - ts)
            wait = max(waits)
            if wait > 0:
                return wait
            if horizon > 0:
                await db.execute(
                    "DELETE FROM budget_calls WHERE provider = ? AND kind = ? AND at <= ?",
                    (*key, ts - horizon),
                )
                await db.execute(
                    "INSERT INTO budget_calls (provider, kind, at) VALUES (?, ?, ?)", (*key, ts)
                )
            return 0.0

    async def cool_down_budget(self, provider: str, kind: str, *, until: datetime) -> None:
        """No call of this kind to this provider before ``until`` (a later cooldown stays)."""
        async with self._transaction() as db:
            await db.execute(
                """INSERT INTO budget_cooldowns (provider, kind, until) VALUES (?, ?, ?)
                   ON CONFLICT (provider, kind)
                   DO UPDATE SET until = MAX(until, excluded.until)""",
                (provider, kind, until.timestamp()),
            )
