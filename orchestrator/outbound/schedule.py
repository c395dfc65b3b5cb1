"""When to try an outbound delivery again: pure, with the random source passed in."""

from __future__ import annotations

import random
from dataclasses import dataclass

# About 14 hours of retries: 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, 6 h.
DEFAULT_SCHEDULE_S = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 21600.0)


def parse_schedule(text: str) -> tuple[float, ...]:
    if not text.strip():
        return DEFAULT_SCHEDULE_S
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"retry schedule must be comma-separated seconds, got {text!r}") from None
    if any(v < 0 for v in values):
        raise ValueError("retry schedule values must not be negative")
    return values


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    delays_s: tuple[float, ...] = DEFAULT_SCHEDULE_S
    jitter: float = 0.1

    def next_delay_s(self, failed_attempts: int, rng: random.Random) -> float | None:
        """Seconds before the next try after ``failed_attempts`` failures; None: give up."""
        if failed_attempts < 1 or failed_attempts > len(self.delays_s):
            return None
        base = self.delays_s[failed_attempts - 1]
        return base * (1.0 + rng.uniform(-self.jitter, self.jitter))
