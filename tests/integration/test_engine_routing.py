"""Routed jobs through the engine: move on when an attempt is known dead, never
while it may still bill; cool-downs, spend limits, late signals of old attempts.

Upsampler is scripted (``FakeUpsampler``), Photio answers synchronously with the
image: the route ``upsampler,photio`` either ends on Photio or stays on Upsampler.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from orchestrator.core import operations
from orchestrator.store.protocol import DeliveryStatus
from schemas.api import CreateJob
from schemas.errors import RejectedInput
from schemas.jobs import Job, JobState
from tests.integration.test_engine import RESULT_URL, FakeUpsampler, World, make_world, success

ROUTE = ("upsampler", "photio")


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path) as made:
        yield made


async def routed(world: World, *, max_cost: float | None = None, n: int = 0) -> Job:
    job, _ = await world.orchestrator.create_job(
        CreateJob(
            "upsampler",
            2.0,
            {},
            None,
            f"https://in.example/{n}.png",
            None,
            route=ROUTE,
            max_cost=max_cost,
        )
    )
    return job


def hang(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("no answer", request=request)


async def events_of(world: World, job_id: str) -> list[str]:
    return [e.type for e in await world.store.list_events(job_id=job_id)]


async def test_a_refused_submit_moves_on_and_the_next_provider_succeeds(world: World) -> None:
    world.fake.submit = lambda r: httpx.Response(403, json={"error": "insufficient credits"})
    job = await routed(world)
    await world.step()
    done = await world.job(job.id)
    assert done.state is JobState.SUCCEEDED and done.provider == "photio"
    assert done.attempt == 2
    (first,) = done.past_attempts
    assert first.provider == "upsampler" and first.state == "failed"
    assert first.failure is not None and first.failure.reason == "insufficient_credit"
    assert world.fake.submits == 1
    assert await events_of(world, job.id) == [
        "job.queued",
        "job.attempt_failed",
        "job.failed_over",
        "job.succeeded",
    ]


async def test_a_job_with_one_provider_still_fails_as_before(world: World) -> None:
    world.fake.submit = lambda r: httpx.Response(403, json={"error": "insufficient credits"})
    job, _ = await world.orchestrator.create_job(
        CreateJob("upsampler", 2.0, {}, None, "https://in.example/a.png", None)
    )
    await world.step()
    done = await world.job(job.id)
    assert done.state is JobState.FAILED and done.attempt == 1 and done.past_attempts == ()


async def test_a_provider_that_keeps_answering_500_is_left_after_its_tries(world: World) -> None:
    world.fake.submit = lambda r: httpx.Response(500, json={"error": "oops"})
    job = await routed(world)
    for _ in range(10):
        await world.step(30)
    done = await world.job(job.id)
    assert done.state is JobState.SUCCEEDED and done.provider == "photio"
    assert world.fake.submits == 3  # UPSCALE_FAILOVER_SUBMIT_TRIES, each one not taken


async def test_an_uncertain_attempt_is_never_moved_on_by_itself(world: World) -> None:
    world.fake.submit = hang
    job = await routed(world)
    await world.step()
    for _ in range(8):  # within the job's 600 s deadline
        await world.step(60)
    held = await world.job(job.id)
    assert held.state is JobState.UNCERTAIN and held.provider == "upsampler"
    assert world.fake.submits == 1
    with pytest.raises(RejectedInput):
        await operations.retry(world.orchestrator, held, confirm_uncertain=False)
    moved = await operations.retry(world.orchestrator, held, confirm_uncertain=True)
    assert moved.id == job.id and moved.provider == "photio" and moved.state is JobState.QUEUED
    await world.step()
    done = await world.job(job.id)
    assert done.state is JobState.SUCCEEDED and done.provider == "photio"
    assert done.past_attempts[0].failure is not None
    assert done.past_attempts[0].failure.reason == "operator_confirmed"
    assert world.fake.submits == 1


async def test_a_reported_failure_moves_on_and_a_late_signal_of_it_is_not_applied(
    world: World,
) -> None:
    world.fake.submit = lambda r: FakeUpsampler.ok("up-7")
    world.fake.status = lambda i: httpx.Response(
        200, json={"id": i, "status": "FAILED", "error": "model crashed", "creditCost": 1}
    )
    job = await routed(world)
    await world.step()
    await world.step(21)
    done = await world.job(job.id)
    assert done.state is JobState.SUCCEEDED and done.provider == "photio"
    assert done.past_attempts[0].provider_job_id == "up-7"
    assert done.past_attempts[0].cost == 1
    late = json.dumps({"id": "up-7", "status": "SUCCESS", "imageUrl": RESULT_URL.format(id="x")})
    _, status = await operations.inject(
        world.orchestrator, "upsampler", late.encode(), job_id=job.id
    )
    assert status is DeliveryStatus.UNMATCHED
    after = await world.job(job.id)
    assert after.version == done.version and after.provider == "photio"


async def test_max_cost_stops_a_route_with_spend_limit(world: World) -> None:
    world.fake.submit = lambda r: FakeUpsampler.ok("up-8")
    world.fake.status = lambda i: httpx.Response(
        200, json={"id": i, "status": "FAILED", "error": "nope", "creditCost": 1}
    )
    job = await routed(world, max_cost=0.5)
    await world.step()
    await world.step(21)
    done = await world.job(job.id)
    assert done.state is JobState.FAILED and done.provider == "upsampler"
    assert done.failure is not None and done.failure.reason == "spend_limit"
    spend = await world.store.spend_today(now=world.clock.now())
    assert spend["upsampler"].credits == 1


async def test_a_failing_provider_cools_down_is_skipped_and_later_probed(world: World) -> None:
    world.fake.submit = lambda r: httpx.Response(401, json={"error": "key revoked"})
    for n in range(3):  # the default threshold: three failures in a row
        await routed(world, n=n)
        await world.step()
    assert world.fake.submits == 3
    health = (await world.store.provider_health())["upsampler"]
    assert health.state(world.clock.now()).value == "cooling"
    skipped = await routed(world, n=10)
    await world.step()
    done = await world.job(skipped.id)
    assert done.state is JobState.SUCCEEDED and done.provider == "photio"
    assert done.past_attempts[0].state == "skipped"
    assert world.fake.submits == 3  # not sent while cooling
    world.fake.submit = lambda r: FakeUpsampler.ok("up-probe")
    world.clock.advance(31)  # the first cool-down is 30 s
    probe = await routed(world, n=11)
    other = await routed(world, n=12)
    await world.step()
    assert world.fake.submits == 4  # one probe; the other job passed the provider by
    assert (await world.job(probe.id)).state is JobState.SUBMITTED
    assert (await world.job(other.id)).provider == "photio"
    health = (await world.store.provider_health())["upsampler"]
    assert health.state(world.clock.now()).value == "healthy"


async def test_a_provider_at_its_daily_cap_is_passed_by_or_fails_the_job(tmp_path: Path) -> None:
    async with make_world(tmp_path, spend_caps={"upsampler": 1.0}) as world:
        world.fake.submit = lambda r: FakeUpsampler.ok("up-paid")
        world.fake.status = success
        paid = await routed(world)
        await world.step()
        await world.step(21)
        assert (await world.job(paid.id)).state is JobState.SUCCEEDED
        assert (await world.store.spend_today(now=world.clock.now()))["upsampler"].credits == 1
        passed_by = await routed(world, n=1)
        alone, _ = await world.orchestrator.create_job(
            CreateJob("upsampler", 2.0, {}, None, "https://in.example/2.png", None)
        )
        await world.step()
        done = await world.job(passed_by.id)
        assert done.state is JobState.SUCCEEDED and done.provider == "photio"
        assert done.past_attempts[0].state == "skipped"
        assert done.past_attempts[0].failure is not None
        assert done.past_attempts[0].failure.reason == "spend_limit"
        failed = await world.job(alone.id)
        assert failed.state is JobState.FAILED
        assert failed.failure is not None and failed.failure.reason == "spend_limit"
        assert world.fake.submits == 1  # only the first job was ever sent
