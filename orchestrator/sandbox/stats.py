"""Per-provider counters of what the sandbox did, for tests and ``GET /stats``."""

from __future__ import annotations

from collections.abc import Iterable

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

    def __init__(self, providers: Iterable[str] = ()) -> None:
        self._counters: dict[str, dict[str, int]] = {}
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

    def get(self, provider: str, counter: str) -> int:
        return self._counters.get(provider, {}).get(counter, 0)

    def reset(self) -> None:
        for counters in self._counters.values():
            for name in counters:
                counters[name] = 0

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {provider: dict(counters) for provider, counters in self._counters.items()}
