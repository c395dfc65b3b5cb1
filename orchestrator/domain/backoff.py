"""When to look at a submitted job again: pure, with the random source passed in."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """A grace period after submit, then exponential backoff with full jitter up to a cap."""

    grace_s: float = 20.0
    base_s: float = 5.0
    cap_s: float = 300.0

    def delay_s(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before poll number ``attempt`` (0 is the first, after the grace)."""
        if attempt <= 0:
            return self.grace_s
        ceiling = min(self.cap_s, self.base_s * 2.0 ** min(attempt - 1, 62))
        return rng.uniform(0.0, ceiling)
