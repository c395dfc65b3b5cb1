"""Request budgets: windows and cooldowns, counted in the store (shared by processes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.core.budgets import Budgets
from orchestrator.store.sqlite import SQLiteStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "b.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_per_minute_window_refuses_then_allows(store: SQLiteStore) -> None:
    budgets = Budgets(store)
    budgets.configure("upsampler", "submit", [(90, 60.0), (6000, 3600.0)])
    granted = [await budgets.try_acquire("upsampler", "submit", at(i * 0.1)) for i in range(90)]
    assert granted == [0.0] * 90
    wait = await budgets.try_acquire("upsampler", "submit", at(10))
    assert 49.9 < wait <= 50.0
    assert await budgets.try_acquire("upsampler", "submit", at(60.05)) == 0.0


async def test_hourly_window_binds_too(store: SQLiteStore) -> None:
    budgets = Budgets(store)
    budgets.configure("p", "submit", [(10, 60.0), (15, 3600.0)])
    taken = 0
    for second in range(0, 3000, 5):
        if await budgets.try_acquire("p", "submit", at(second)) == 0.0:
            taken += 1
    assert taken == 15


async def test_retry_after_cools_the_budget_down(store: SQLiteStore) -> None:
    budgets = Budgets(store)
    budgets.configure("p", "status", [(240, 60.0)])
    await budgets.cool_down("p", "status", at(100), 30.0)
    assert await budgets.try_acquire("p", "status", at(110)) == pytest.approx(20.0)
    assert await budgets.try_acquire("p", "status", at(130)) == 0.0


async def test_unconfigured_or_zero_limits_are_unlimited(store: SQLiteStore) -> None:
    budgets = Budgets(store)
    budgets.configure("p", "status", [(0, 60.0)])
    assert await budgets.try_acquire("x", "submit", at(0)) == 0.0
    assert [await budgets.try_acquire("p", "status", at(0)) for _ in range(500)] == [0.0] * 500
