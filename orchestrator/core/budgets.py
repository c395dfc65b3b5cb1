"""Per-provider request budgets (sliding windows) and Retry-After cooldowns.

The calls are counted in the store, so every process of a deployment draws
from the same budget. A caller that is refused gets the seconds until it may
try again, and reschedules instead of sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol


@dataclass(frozen=True, slots=True)
class BudgetUse:
    """One window of a budget: ``used`` of ``limit`` calls in the last ``period_s``."""

    kind: str
    limit: int
    period_s: float
    used: int

    @property
    def left(self) -> int:
        return max(0, self.limit - self.used)


class BudgetStore(Protocol):
    async def take_budget(
        self,
        provider: str,
        kind: str,
        windows: list[tuple[int, float]],
        *,
        now: datetime,
        cooldown_s: float = 0.0,
    ) -> float: ...

    async def cool_down_budget(self, provider: str, kind: str, *, until: datetime) -> None: ...

    async def count_budget_calls(self, provider: str, kind: str, *, since: datetime) -> int: ...


class Budgets:
    def __init__(self, store: BudgetStore) -> None:
        self._store = store
        self._windows: dict[tuple[str, str], list[tuple[int, float]]] = {}

    def configure(self, provider: str, kind: str, limits: list[tuple[int, float]]) -> None:
        """``limits`` are ``(calls, period_s)`` pairs; a limit <= 0 is no limit."""
        self._windows[(provider, kind)] = [(n, p) for n, p in limits if n > 0]

    async def try_acquire(self, provider: str, kind: str, now: datetime) -> float:
        """Take one call if every window has room: 0. Else the seconds to wait."""
        windows = self._windows.get((provider, kind))
        if not windows:
            return 0.0
        return await self._store.take_budget(provider, kind, windows, now=now)

    async def usage(self, provider: str, now: datetime) -> list[BudgetUse]:
        """Each configured window of ``provider``'s budgets and how much of it is used."""
        found: list[BudgetUse] = []
        for (name, kind), windows in sorted(self._windows.items()):
            if name != provider:
                continue
            for limit, period_s in windows:
                since = now - timedelta(seconds=period_s)
                used = await self._store.count_budget_calls(provider, kind, since=since)
                found.append(BudgetUse(kind, limit, period_s, used))
        return found

    async def cool_down(self, provider: str, kind: str, now: datetime, seconds: float) -> None:
        await self._store.cool_down_budget(provider, kind, until=now + timedelta(seconds=seconds))
