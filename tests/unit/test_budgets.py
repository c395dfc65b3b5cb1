from __future__ import annotations

from orchestrator.budgets import Budgets


def test_per_minute_window_refuses_then_allows() -> None:
    budgets = Budgets()
    budgets.configure("upsampler", "submit", [(90, 60.0), (6000, 3600.0)])
    granted = [budgets.try_acquire("upsampler", "submit", 1000.0 + i * 0.1) for i in range(90)]
    assert granted == [0.0] * 90
    wait = budgets.try_acquire("upsampler", "submit", 1010.0)
    assert 49.9 < wait <= 50.0
    assert budgets.try_acquire("upsampler", "submit", 1060.05) == 0.0


def test_hourly_window_binds_too() -> None:
    budgets = Budgets()
    budgets.configure("p", "submit", [(10, 60.0), (15, 3600.0)])
    now = 0.0
    taken = 0
    while now < 3000:
        if budgets.try_acquire("p", "submit", now) == 0.0:
            taken += 1
        now += 1.0
    assert taken == 15


def test_retry_after_cools_the_budget_down() -> None:
    budgets = Budgets()
    budgets.configure("p", "status", [(240, 60.0)])
    budgets.cool_down("p", "status", 100.0, 30.0)
    assert budgets.try_acquire("p", "status", 110.0) == 20.0
    assert budgets.try_acquire("p", "status", 130.0) == 0.0


def test_unknown_budget_is_unlimited() -> None:
    assert Budgets().try_acquire("x", "submit", 0.0) == 0.0
