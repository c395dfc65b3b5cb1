"""The sign-in throttle: failures per client address within a window."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from receiver.console.throttle import SignInThrottle


def test_a_client_waits_after_too_many_failures_until_the_oldest_ages_out() -> None:
    throttle = SignInThrottle(max_failures=3, window_s=60)
    for t in (0.0, 10.0, 20.0):
        assert throttle.wait_s("a", t) == 0
        throttle.failed("a", t)
    assert throttle.wait_s("a", 30.0) == 30.0  # the failure at 0 ages out at 60
    assert throttle.wait_s("b", 30.0) == 0  # per address
    assert throttle.wait_s("a", 60.0) == 0
    throttle.failed("a", 60.0)
    assert throttle.wait_s("a", 61.0) == 9.0  # now the one at 10 is the oldest of three


def test_a_success_clears_the_client() -> None:
    throttle = SignInThrottle(max_failures=2, window_s=60)
    throttle.failed("a", 0)
    throttle.succeeded("a")
    throttle.failed("a", 1)
    assert throttle.wait_s("a", 2) == 0


def test_the_record_forgets_the_least_recently_failed_past_its_size() -> None:
    throttle = SignInThrottle(max_failures=1, window_s=60, max_clients=2)
    throttle.failed("a", 0)
    throttle.failed("b", 1)
    throttle.failed("a", 2)  # a is now the most recent
    throttle.failed("c", 3)
    assert throttle.wait_s("b", 4) == 0  # forgotten
    assert throttle.wait_s("a", 4) > 0 and throttle.wait_s("c", 4) > 0


@given(
    times=st.lists(st.floats(min_value=0, max_value=1000), max_size=30).map(sorted),
    limit=st.integers(min_value=1, max_value=5),
)
def test_never_more_than_the_limit_of_failures_go_unanswered_in_a_window(
    times: list[float], limit: int
) -> None:
    throttle = SignInThrottle(max_failures=limit, window_s=100)
    tried: list[float] = []
    for t in times:
        wait = throttle.wait_s("x", t)
        assert wait >= 0
        if wait == 0:
            tried.append(t)
            throttle.failed("x", t)
    for t in tried:
        assert len([u for u in tried if t - 100 < u <= t]) <= limit
