"""Per-provider counters of what the sandbox did, for tests and ``GET /stats``."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

STANDARD_COUNTERS: tuple[str, ...] = (
    "submits",
    "jobs_created",
    "status_calls",
    "callbacks_sent",
    "callbacks_failed",
    "results_served",
)


class Stats:
    """Counters keyed by provider then counter name.

    A registered provider always reports every standard counter (zero if never
    bumped) plus the extra counters it registered; bumping an unknown provider or
    counter registers it on the fly.
    """

    def __init__(
        self, providers: Iterable[str] = (), *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._counters: dict[str, dict[str, int]] = {}
        # The busiest minute of status calls, so a test can check a client's rate limit.
        self._clock = clock
        self._recent_status: dict[str, deque[float]] = {}
        for provider in providers:
            self.register(provider)

    def register(self, provider: str, extra: Iterable[str] = ()) -> None:
        counters = self._counters.setdefault(provider, {})
        for name in (*STANDARD_COUNTERS, *extra):
            counters.setdefault(name, 0)

    def bump(self, provider: str, counter: str, n: int = 1) -> None:
        if provider not in self._counters:
            self.register(provider)
        counters = self._counters[provider]
        counters[counter] = counters.get(counter, 0) + n
        if counter == "status_calls":
            now = self._clock()
            recent = self._recent_status.setdefault(provider, deque())
            recent.extend([now] * n)
            while recent and recent[0] <= now - 60.0:
                recent.popleft()
            busiest = counters.get("status_calls_max_per_min", 0)
            counters["status_calls_max_per_min"] = max(busiest, len(recent))

    def get(self, provider: str, counter: str) -> int:
        return self._counters.get(provider, {}).get(counter, 0)

    def reset(self) -> None:
        self._recent_status.clear()
        for counters in self._counters.values():
            for name in counters:
                counters[name] = 0

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {provider: dict(counters) for provider, counters in self._counters.items()}
