"""Per-provider request budgets: sliding windows plus Retry-After cooldowns.

Pure bookkeeping: time comes in as an argument. A caller that is refused gets
the number of seconds until it may try again, and reschedules instead of
sleeping.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class Window:
    limit: int
    period_s: float
    stamps: deque[float] = field(default_factory=deque)

    def wait_s(self, now: float) -> float:
        while self.stamps and self.stamps[0] <= now - self.period_s:
            self.stamps.popleft()
        if self.limit <= 0 or len(self.stamps) < self.limit:
            return 0.0
        return self.stamps[0] + self.period_s - now


@dataclass(slots=True)
class Budget:
    """All the windows one kind of call must fit in, and a cooldown."""

    windows: list[Window]
    cooldown_until: float = 0.0

    def try_acquire(self, now: float) -> float:
        """Take one call if every window has room: return 0. Else the seconds to wait."""
        wait = max([self.cooldown_until - now, *(w.wait_s(now) for w in self.windows)])
        if wait > 0:
            return wait
        for window in self.windows:
            if window.limit > 0:
                window.stamps.append(now)
        return 0.0

    def cool_down(self, now: float, seconds: float) -> None:
        self.cooldown_until = max(self.cooldown_until, now + seconds)


class Budgets:
    """Submit and status budgets for each provider."""

    def __init__(self) -> None:
        self._budgets: dict[tuple[str, str], Budget] = {}

    def configure(self, provider: str, kind: str, limits: list[tuple[int, float]]) -> None:
        self._budgets[(provider, kind)] = Budget([Window(n, p) for n, p in limits])

    def try_acquire(self, provider: str, kind: str, now: float) -> float:
        budget = self._budgets.get((provider, kind))
        return 0.0 if budget is None else budget.try_acquire(now)

    def cool_down(self, provider: str, kind: str, now: float, seconds: float) -> None:
        budget = self._budgets.get((provider, kind))
        if budget is not None:
            budget.cool_down(now, seconds)
