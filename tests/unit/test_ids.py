from __future__ import annotations

from orchestrator.clock import FakeClock
from orchestrator.ids import new_id


def test_ids_sort_in_creation_order_within_one_millisecond() -> None:
    clock = FakeClock()
    ids = [new_id("job", clock.now()) for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_ids_sort_across_milliseconds_and_survive_a_clock_step_back() -> None:
    clock = FakeClock()
    first = new_id("job", clock.now())
    clock.advance(0.002)
    second = new_id("job", clock.now())
    clock.advance(-0.010)
    third = new_id("job", clock.now())
    assert first < second < third
