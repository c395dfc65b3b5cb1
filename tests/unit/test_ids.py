from __future__ import annotations

from datetime import UTC, datetime

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


def test_an_id_carries_its_millisecond_in_crockford_base32() -> None:
    # Later than any id made before in this process (ids never go back in time).
    at = datetime(2200, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    made = new_id("dlv", at)
    prefix, _, digits = made.partition("_")
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    assert prefix == "dlv" and len(digits) == 26 and set(digits) <= set(alphabet)
    millis = 0
    for ch in digits[:10]:
        millis = millis * 32 + alphabet.index(ch)
    assert millis == int(at.timestamp() * 1000)


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    clock = FakeClock()
    clock.advance(7200.0)
    # Two children forked from the same state: without a new seed each, they would
    # make the same ids.
    with ctx.Pool(1) as first, ctx.Pool(1) as second:
        one = first.apply(_ids_in_child, (clock.now().timestamp(),))
        two = second.apply(_ids_in_child, (clock.now().timestamp(),))
    assert len(set(one) | set(two)) == 10


def _ids_in_child(at: float) -> list[str]:
    from datetime import UTC, datetime

    from orchestrator import ids

    ids._last = (0, 0)
    return [new_id("job", datetime.fromtimestamp(at, UTC)) for _ in range(5)]
