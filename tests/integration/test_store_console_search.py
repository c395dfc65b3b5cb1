"""Store verbs the console reads through, on both stores: finding jobs by id, provider
job id or metadata text, and how much of a provider's budget window is used."""

from __future__ import annotations

from datetime import timedelta

from orchestrator.common.clock import FakeClock
from orchestrator.domain.states import Event
from orchestrator.store.protocol import Changes, Store
from schemas.jobs import JobState
from tests.factories import make_new_job
from tests.integration.test_store_contract import store  # noqa: F401  (the two-store fixture)

CLOCK = FakeClock()


async def test_list_jobs_finds_by_id_provider_id_or_metadata_text(store: Store) -> None:  # noqa: F811
    now = CLOCK.now()
    first, _ = await store.create_job(make_new_job(now, metadata={"order": 42, "who": "Ann"}))
    second, _ = await store.create_job(
        make_new_job(now + timedelta(milliseconds=1), metadata={"order": 7, "note": "50%_off!"})
    )
    submitted = await store.apply_transition(
        second,
        Event.SUBMIT_STARTED,
        JobState.SUBMITTING,
        cause="submit",
        now=now,
    )
    assert submitted is not None
    await store.apply_transition(
        submitted,
        Event.SUBMIT_ACCEPTED,
        JobState.SUBMITTED,
        cause="submit",
        changes=Changes(provider_job_id="up-123"),
        now=now,
    )

    async def found(text: str) -> list[str]:
        return [j.id for j in await store.list_jobs(text=text, limit=10)]

    assert await found(first.id) == [first.id]
    assert await found("up-123") == [second.id]
    assert await found('"order": 42') == [first.id]
    assert await found("ann") == [first.id]  # any case
    assert await found("order") == [second.id, first.id]
    # LIKE's wildcards are plain text here.
    assert await found("50%_off") == [second.id]
    assert await found("ff!") == [second.id]
    # Shorter than three characters: ids and provider job ids only, never a read of
    # every job's metadata.
    assert await found("%") == []
    assert await found("An") == []
    assert await found("nothing like it") == []
    # With the other filters and the page cursor.
    assert [j.id for j in await store.list_jobs(text="order", state=JobState.QUEUED)] == [first.id]
    assert [j.id for j in await store.list_jobs(text="order", after=second.id)] == [first.id]


async def test_count_budget_calls_is_the_use_of_a_window(store: Store) -> None:  # noqa: F811
    t0 = CLOCK.now()
    windows = [(100, 3600.0)]
    for seconds in (0, 10, 20, 30):
        assert (
            await store.take_budget("fotor", "submit", windows, now=t0 + timedelta(seconds=seconds))
            == 0
        )
    await store.take_budget("fotor", "status", windows, now=t0)
    at_40 = t0 + timedelta(seconds=40)
    assert (
        await store.count_budget_calls("fotor", "submit", since=at_40 - timedelta(seconds=60)) == 4
    )
    assert (
        await store.count_budget_calls("fotor", "submit", since=at_40 - timedelta(seconds=25)) == 2
    )
    assert await store.count_budget_calls("fotor", "status", since=t0 - timedelta(seconds=1)) == 1
    assert await store.count_budget_calls("upsampler", "submit", since=t0 - timedelta(1)) == 0
