"""The sliding-window arithmetic: how long a caller waits, from the calls granted."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.domain.budget_window import Window, horizon_s, ranks, wait_s


def _recent(calls: list[float], windows: list[Window], cooldown_s: float) -> dict[int, float]:
    """What the store reads: the calls at the ranks asked for, latest first."""
    latest_first = sorted(calls, reverse=True)
    return {r: latest_first[r - 1] for r in ranks(windows, cooldown_s) if r <= len(latest_first)}


def _wait(calls: list[float], windows: list[Window], now: float, cooldown_s: float = 0.0) -> float:
    return wait_s(
        now=now,
        windows=windows,
        cooldown_s=cooldown_s,
        cooldown_until=None,
        recent=_recent(calls, windows, cooldown_s),
    )


def _counting_wait(
    calls: list[float], windows: list[Window], now: float, cooldown_s: float
) -> float:
    """The rule stated plainly: count each window's calls; when it is full, wait
    until enough of its oldest calls age out."""
    waits = [0.0]
    for limit, period in windows:
        if limit <= 0:
            continue
        inside = sorted(c for c in calls if c > now - period)
        if len(inside) >= limit:
            waits.append(inside[len(inside) - limit] + period - now)
    if cooldown_s > 0 and calls:
        waits.append(max(calls) + cooldown_s - now)
    return max(waits)


def test_a_full_window_waits_until_its_oldest_call_ages_out() -> None:
    calls = [0.0, 1.0, 2.0]
    assert _wait(calls, [(3, 10.0)], now=5.0) == 5.0
    assert _wait(calls, [(3, 10.0)], now=10.0) == 0.0
    assert _wait(calls, [(4, 10.0)], now=5.0) == 0.0


def test_the_longest_wait_of_all_windows_wins() -> None:
    calls = [0.0, 50.0]
    assert _wait(calls, [(1, 60.0), (2, 100.0)], now=55.0) == 55.0
    assert _wait(calls, [(1, 10.0), (2, 100.0)], now=55.0) == 45.0


def test_cooldowns_count_from_the_last_call_and_from_retry_after() -> None:
    assert _wait([10.0], [], now=12.0, cooldown_s=5.0) == 3.0
    assert wait_s(now=12.0, windows=[], cooldown_s=0.0, cooldown_until=20.0, recent={}) == 8.0
    assert wait_s(now=12.0, windows=[], cooldown_s=0.0, cooldown_until=2.0, recent={}) == 0.0


def test_no_limit_keeps_nothing() -> None:
    assert horizon_s([(0, 60.0)], 0.0) == 0.0
    assert ranks([(0, 60.0)], 0.0) == []
    assert horizon_s([(5, 60.0), (100, 3600.0)], 1.0) == 3600.0
    assert ranks([(5, 60.0), (100, 3600.0)], 1.0) == [1, 5, 100]


_windows = st.lists(
    st.tuples(st.integers(-1, 6), st.floats(0.5, 100.0, allow_nan=False)), max_size=3
)
_times = st.lists(st.floats(0.0, 200.0, allow_nan=False), max_size=20)


@given(calls=_times, windows=_windows, now=st.floats(0.0, 300.0), cooldown=st.floats(0.0, 20.0))
def test_reading_a_few_ranks_is_the_same_as_counting_every_window(
    calls: list[float], windows: list[Window], now: float, cooldown: float
) -> None:
    assert _wait(calls, windows, now, cooldown) == _counting_wait(calls, windows, now, cooldown)


# Times in halves of a second: exact in binary, so the property is not about rounding.
_halves = st.integers(0, 10).map(lambda n: n / 2)


@given(
    windows=st.lists(
        st.tuples(st.integers(1, 5), st.integers(1, 50).map(float)), min_size=1, max_size=3
    ),
    asks=st.lists(_halves, min_size=1, max_size=40),
)
def test_a_caller_that_waits_as_told_never_overfills_a_window(
    windows: list[Window], asks: list[float]
) -> None:
    """Take calls as fast as allowed: no window ever holds more than its limit, and
    a caller that waits the answer it got is let through."""
    granted: list[float] = []
    now = 0.0
    for gap in asks:
        now += gap
        wait = _wait(granted, windows, now)
        if wait > 0:
            now += wait
            assert _wait(granted, windows, now) == 0.0
        granted.append(now)
        for limit, period in windows:
            assert sum(1 for c in granted if c > now - period) <= limit
