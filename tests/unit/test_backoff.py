from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.domain.backoff import PollPolicy


def test_first_check_waits_the_grace_period() -> None:
    assert PollPolicy(grace_s=20).delay_s(0, random.Random(1)) == 20


@given(st.integers(min_value=1, max_value=10_000), st.integers())
def test_delays_stay_under_the_growing_cap(attempt: int, seed: int) -> None:
    policy = PollPolicy(grace_s=20, base_s=5, cap_s=300)
    delay = policy.delay_s(attempt, random.Random(seed))
    assert 0 <= delay <= min(300, 5 * 2 ** (attempt - 1))


def test_jitter_spreads_the_delays() -> None:
    policy = PollPolicy(base_s=5, cap_s=300)
    rng = random.Random(7)
    delays = {round(policy.delay_s(6, rng), 3) for _ in range(50)}
    assert len(delays) > 40
    assert max(delays) > 100


def test_ceiling_reaches_the_cap_and_stays() -> None:
    class Top(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    policy = PollPolicy(base_s=5, cap_s=300)
    assert [policy.delay_s(n, Top()) for n in (1, 2, 3, 7, 8, 50)] == [5, 10, 20, 300, 300, 300]
