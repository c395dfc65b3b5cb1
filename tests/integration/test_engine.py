"""The orchestrator's decisions, driven step by step with a fake clock.

The Upsampler, Photio and Artnex APIs and the result host are faked with
``httpx.MockTransport`` (no monkeypatching); the store is a real SQLite file.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.common.clock import FakeClock
from orchestrator.common.settings import Secret
from orchestrator.core import operations
from orchestrator.core.budgets import Budgets
from orchestrator.core.config import EngineConfig
from orchestrator.core.engine import Orchestrator
from orchestrator.core.inputs import InputStore
from orchestrator.domain.backoff import PollPolicy
from orchestrator.domain.states import Event
from orchestrator.fetch.fetcher import ResultFetcher
from orchestrator.providers.artnex import ArtnexProvider
from orchestrator.providers.fotor import FotorProvider
from orchestrator.providers.photio import PhotioProvider
from orchestrator.providers.upsampler import UpsamplerProvider
from orchestrator.results.storage import LocalResultStorage
from orchestrator.security.signing import CallbackClaims, CallbackSigner, InputSigner
from orchestrator.store.protocol import Changes, DeliveryStatus
from orchestrator.store.sqlite import SQLiteStore
from schemas.api import CreateJob
from schemas.errors import RejectedInput, StoreUnavailable
from schemas.jobs import Job, JobState
from tests.factories import make_png

RESULT_URL = "https://results.example/r/{id}.png"


@dataclass
class FakeUpsampler:
    """A scripted Upsampler: answers are functions so a test can change them mid-way."""

    submit: Callable[[httpx.Request], httpx.Response] = field(default=lambda r: FakeUpsampler.ok())
    status: Callable[[str], httpx.Response] = field(
        default=lambda i: httpx.Response(200, json={"id": i, "status": "IN_PROGRESS"})
    )
    submits: int = 0
    status_calls: list[str] = field(default_factory=list)
    result_calls: int = 0

    @staticmethod
    def ok(job_id: str = "up-1") -> httpx.Response:
        return httpx.Response(200, json={"id": job_id, "status": "IN_QUEUE", "creditCost": 1})

    def handler(self, request: httpx.Request) -> httpx.Response:
        # ``submit`` may be a coroutine function: MockTransport awaits its answer.
        if request.method == "POST":
            self.submits += 1
            return self.submit(request)
        job_id = request.url.path.rsplit("/", 1)[-1]
        self.status_calls.append(job_id)
        return self.status(job_id)

    def results(self, request: httpx.Request) -> httpx.Response:
        self.result_calls += 1
        return httpx.Response(
            200, stream=_Body(make_png(8, 6)), headers={"content-type": "image/png"}
        )


class _Body(httpx.AsyncByteStream):
    """A response body that streams, as a real download does."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data


def photio_answer(request: httpx.Request) -> httpx.Response:
    """Photio's answer: the same image for the same input, as a real upscaler gives."""
    return httpx.Response(
        200, json={"status_code": 200, "body": base64.b64encode(make_png(8, 6)).decode()}
    )


def artnex_answer(request: httpx.Request) -> httpx.Response:
    """An Artnex answer that names its request; the same one for every submit."""
    return httpx.Response(
        200,
        json={
            "success": True,
            "image_url": "https://results.example/r/artnex.png",
            "request_id": "req_same",
            "credits_used": 100,
        },
    )


def success(job_id: str) -> httpx.Response:
    return httpx.Response(
        200, json={"id": job_id, "status": "SUCCESS", "imageUrl": RESULT_URL.format(id=job_id)}
    )


@dataclass
class World:
    orchestrator: Orchestrator
    store: SQLiteStore
    clock: FakeClock
    fake: FakeUpsampler
    budgets: Budgets
    # The synchronous providers' answers (Photio and Artnex), by host.
    sync: dict[str, Callable[[httpx.Request], httpx.Response]] = field(
        default_factory=lambda: {"photio.example": photio_answer, "artnex.example": artnex_answer}
    )

    async def job(self, job_id: str) -> Job:
        job = await self.store.get_job(job_id)
        assert job is not None
        return job

    async def create(self, provider: str = "upsampler") -> Job:
        job, _ = await self.orchestrator.create_job(
            CreateJob(provider, 2.0, {}, None, "https://in.example/a.png", None)
        )
        return job

    def answer_sync(self, request: httpx.Request) -> httpx.Response:
        return self.sync[request.url.host](request)

    async def step(self, seconds: float = 0.0) -> None:
        self.clock.advance(seconds)
        await self.orchestrator.run_until_idle()


@asynccontextmanager
async def make_world(
    tmp_path: Path, wrap: Callable[[SQLiteStore], Any] = lambda store: store, **config: Any
) -> AsyncIterator[World]:
    """The orchestrator on a real SQLite store, seen by it through ``wrap``; ``config``
    overrides fields of its EngineConfig."""
    clock = FakeClock()
    fake = FakeUpsampler()
    api = httpx.AsyncClient(transport=httpx.MockTransport(fake.handler))
    sync_answers: list[World] = []
    sync_api = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: sync_answers[0].answer_sync(r))
    )
    files = httpx.AsyncClient(transport=httpx.MockTransport(fake.results))
    store = SQLiteStore(tmp_path / "engine.db")
    await store.open()
    keys = [Secret("k" * 20)]
    budgets = Budgets(store)
    storage = LocalResultStorage(tmp_path / "results")
    orchestrator = Orchestrator(
        config=EngineConfig(
            public_base="https://orchestrator.example",
            job_deadline_s=600,
            submit_timeout_s=5,
            input_url_ttl_s=600,
            poll=PollPolicy(grace_s=20, base_s=5, cap_s=60),
            **config,
        ),
        store=wrap(store),
        providers={
            "upsampler": UpsamplerProvider(
                api, base_url="https://upsampler.example/api/v1", api_key="key"
            ),
            "photio": PhotioProvider(sync_api, base_url="https://photio.example", api_key="key"),
            "artnex": ArtnexProvider(sync_api, base_url="https://artnex.example", api_key="key"),
            "fotor": FotorProvider(sync_api, base_url="https://fotor.example", api_key="key"),
        },
        fetcher=ResultFetcher(
            files,
            storage,
            storage.tmp_dir,
            max_bytes=10**6,
            max_pixels=10**6,
            sleep=lambda s: asyncio.sleep(0),
        ),
        inputs=InputStore(
            LocalResultStorage(tmp_path / "inputs"), tmp_path / "inputs" / ".tmp", max_bytes=10**6
        ),
        callback_signer=CallbackSigner(keys, clock),
        input_signer=InputSigner(keys, clock),
        budgets=budgets,
        clock=clock,
        rng=random.Random(3),
    )
    world = World(orchestrator, store, clock, fake, budgets)
    sync_answers.append(world)
    try:
        yield world
    finally:
        await api.aclose()
        await sync_api.aclose()
        await files.aclose()
        await store.close()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path) as made:
        yield made


async def test_submit_then_poll_after_grace_then_fetch(world: World) -> None:
    job = await world.create()
    await world.step()
    assert (await world.job(job.id)).state is JobState.SUBMITTED
    await world.step(19)
    assert world.fake.status_calls == []  # nothing before the grace period
    world.fake.status = success
    await world.step(1.5)
    done = await world.job(job.id)
    assert done.state is JobState.SUCCEEDED
    assert done.result is not None and (done.result.width, done.result.height) == (8, 6)
    assert world.fake.status_calls == ["up-1"]


async def test_submit_body_carries_the_signed_callback_url(world: World) -> None:
    seen: list[dict[str, object]] = []

    def submit(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return FakeUpsampler.ok()

    world.fake.submit = submit
    job = await world.create()
    await world.step()
    webhook = str(seen[0]["webhook"])
    assert webhook.startswith("https://orchestrator.example/callbacks/upsampler/")
    token = webhook.rsplit("/", 1)[-1]
    claims = world.orchestrator.callback_signer.verify("upsampler", token)
    assert claims == CallbackClaims("upsampler", job.id)


async def test_deadline_fails_the_job_and_polling_stops(world: World) -> None:
    job = await world.create()
    await world.step()
    for _ in range(200):
        await world.step(10)
    done = await world.job(job.id)
    assert done.state is JobState.FAILED
    assert done.failure is not None and done.failure.reason == "deadline"
    polls = len(world.fake.status_calls)
    assert 5 < polls < 60  # backed off, not once per step
    await world.step(3600)
    assert len(world.fake.status_calls) == polls  # a terminal job is never polled


async def test_backoff_grows_to_the_cap(world: World) -> None:
    await world.create()
    await world.step()
    times: list[float] = []
    start = world.clock.now()
    for _ in range(600):
        before = len(world.fake.status_calls)
        await world.step(1)
        if len(world.fake.status_calls) > before:
            times.append((world.clock.now() - start).total_seconds())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert times[0] == pytest.approx(20, abs=1.01)
    assert max(gaps) <= 61
    assert sum(gaps) / len(gaps) > 10  # jittered backoff, not a fixed short interval


async def test_racing_callback_and_poll_converge_on_one_result(world: World) -> None:
    job = await world.create()
    await world.step()
    world.fake.status = success
    body = success("up-1").content
    claims = CallbackClaims("upsampler", job.id)
    world.clock.advance(21)
    await asyncio.gather(
        world.orchestrator.receive(claims, {}, body),
        world.orchestrator.run_until_idle(),
    )
    await world.step()
    done = await world.job(job.id)
    assert done.state is JobState.SUCCEEDED
    history = await world.store.history(job.id)
    assert [h.to_state for h in history].count(JobState.FETCHING) == 1
    assert [h.to_state for h in history].count(JobState.SUCCEEDED) == 1
    assert world.fake.result_calls == 1


async def test_late_callback_after_terminal_changes_nothing(world: World) -> None:
    job = await world.create()
    await world.step()
    world.fake.status = lambda i: httpx.Response(
        200, json={"id": i, "status": "FAILED", "error": "bad input"}
    )
    await world.step(21)
    failed = await world.job(job.id)
    assert failed.state is JobState.FAILED and failed.failure is not None
    assert failed.failure.message == "bad input"
    delivery = await world.orchestrator.receive(
        CallbackClaims("upsampler", job.id), {}, success("up-1").content
    )
    await world.step()
    assert (await world.job(job.id)) == failed
    stored = await world.store.get_delivery(delivery.id)
    assert stored is not None and stored.status is DeliveryStatus.APPLIED


async def test_callback_with_another_provider_job_id_is_dead(world: World) -> None:
    job = await world.create()
    await world.step()
    delivery = await world.orchestrator.receive(
        CallbackClaims("upsampler", job.id), {}, success("someone-else").content
    )
    await world.step()
    assert (await world.job(job.id)).state is JobState.SUBMITTED
    stored = await world.store.get_delivery(delivery.id)
    assert stored is not None and stored.status is DeliveryStatus.DEAD


async def test_early_callback_waits_for_the_submit_answer(world: World) -> None:
    job = await world.create()
    delivery = await world.orchestrator.receive(
        CallbackClaims("upsampler", job.id), {}, success("up-1").content
    )
    await world.orchestrator.process_inbox()
    pending = await world.store.get_delivery(delivery.id)
    assert pending is not None and pending.status is DeliveryStatus.PENDING
    await world.step()
    assert (await world.job(job.id)).state is JobState.SUCCEEDED
    assert world.fake.status_calls == []


async def test_early_callback_settles_a_job_whose_submit_answer_never_came(
    world: World,
) -> None:
    # The provider did the work and called back while our submit call was still
    # waiting; then the call timed out. The callback proves the job exists.
    async def early_then_timeout(request: httpx.Request) -> httpx.Response:
        claims = CallbackClaims("upsampler", job.id)
        await world.orchestrator.receive(claims, {}, success("up-1").content)
        await world.orchestrator.process_inbox()  # the job is submitting: it waits
        raise httpx.ReadTimeout("no answer", request=request)

    world.fake.submit = early_then_timeout  # type: ignore[assignment]
    job = await world.create()
    await world.step()
    await _assert_settled_by_its_early_callback(world, job.id)


async def test_an_early_callback_not_filed_yet_settles_a_job_whose_submit_answer_never_came(
    world: World,
) -> None:
    # As above, but no inbox pass runs while the call waits: the callback is still
    # among the acknowledged ones when the job turns uncertain, so the submit side
    # finds nothing waiting for it. The next pass files it and settles the job.
    async def early_then_timeout(request: httpx.Request) -> httpx.Response:
        await world.orchestrator.receive(
            CallbackClaims("upsampler", job.id), {}, success("up-1").content
        )
        raise httpx.ReadTimeout("no answer", request=request)

    world.fake.submit = early_then_timeout  # type: ignore[assignment]
    job = await world.create()
    await world.step()
    await _assert_settled_by_its_early_callback(world, job.id)


async def _assert_settled_by_its_early_callback(world: World, job_id: str) -> None:
    """Uncertain, then settled by the callback that came before the submit's answer:
    applied once, after one submit and no status call."""
    assert (await world.job(job_id)).state is JobState.SUCCEEDED
    assert [h.to_state for h in await world.store.history(job_id)][-3:] == [
        JobState.UNCERTAIN,
        JobState.FETCHING,
        JobState.SUCCEEDED,
    ]
    (delivery,) = await world.store.list_deliveries(job_id=job_id)
    assert delivery.status is DeliveryStatus.APPLIED
    assert world.fake.submits == 1 and world.fake.status_calls == []


async def test_early_callback_settles_a_job_whose_submit_was_cut_off(world: World) -> None:
    job = await world.create()
    started = await world.store.apply_transition(
        job, Event.SUBMIT_STARTED, JobState.SUBMITTING, cause="test", now=world.clock.now()
    )
    assert started is not None
    await world.orchestrator.receive(
        CallbackClaims("upsampler", job.id), {}, success("up-1").content
    )
    await world.orchestrator.process_inbox()
    await world.orchestrator.recover(sole_process=True)  # a restart: the call was cut off
    await world.step()
    assert (await world.job(job.id)).state is JobState.SUCCEEDED
    assert world.fake.submits == 0


@pytest.mark.parametrize(
    ("status", "reason"),
    [(400, "rejected_input"), (401, "provider_auth"), (403, "insufficient_credit")],
)
async def test_refused_submits_fail_with_the_reason(world: World, status: int, reason: str) -> None:
    world.fake.submit = lambda r: httpx.Response(status, json={"error": "nope"})
    job = await world.create()
    await world.step()
    done = await world.job(job.id)
    assert done.state is JobState.FAILED
    assert done.failure is not None and done.failure.reason == reason
    await world.step(3600)
    assert world.fake.submits == 1


async def test_500_on_submit_is_retried_later(world: World) -> None:
    world.fake.submit = lambda r: httpx.Response(500, json={"error": "oops"})
    job = await world.create()
    await world.step()
    assert (await world.job(job.id)).state is JobState.QUEUED
    world.fake.submit = lambda r: FakeUpsampler.ok()
    await world.step(0.5)
    assert world.fake.submits == 1  # waits before trying again
    await world.step(10)
    assert world.fake.submits == 2
    assert (await world.job(job.id)).state is JobState.SUBMITTED


async def test_read_timeout_on_submit_leaves_the_job_uncertain(world: World) -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    world.fake.submit = hang
    job = await world.create()
    await world.step()
    uncertain = await world.job(job.id)
    assert uncertain.state is JobState.UNCERTAIN
    assert uncertain.failure is not None
    assert uncertain.failure.to_json()["reason"] == "submission_uncertain"  # the wire value
    await world.step(3600)
    assert world.fake.submits == 1


async def test_a_retry_asks_what_its_job_asked_and_is_submitted_once_confirmed(
    world: World,
) -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    world.fake.submit = hang
    job = await world.create()
    await world.step()
    uncertain = await world.job(job.id)
    world.fake.submit = lambda r: FakeUpsampler.ok("up-2")
    world.clock.advance(60)
    with pytest.raises(RejectedInput):
        await operations.retry(world.orchestrator, uncertain, confirm_uncertain=False)
    again = await operations.retry(world.orchestrator, uncertain, confirm_uncertain=True)
    assert again.id != job.id and again.retry_of == job.id
    assert (again.provider, again.scale, again.input_url) == (
        job.provider,
        job.scale,
        job.input_url,
    )
    assert again.state is JobState.QUEUED
    assert again.deadline_at == world.clock.now() + timedelta(seconds=600)
    await world.step()
    assert (await world.job(again.id)).state is JobState.SUBMITTED
    assert world.fake.submits == 2


async def test_status_budget_is_respected(world: World) -> None:
    world.budgets.configure("upsampler", "status", [(3, 60.0)])
    for i in range(6):
        world.fake.submit = lambda r, i=i: FakeUpsampler.ok(f"up-{i}")  # type: ignore[misc]
        await world.create()
        await world.step()
    await world.step(21)
    assert len(world.fake.status_calls) == 3
    await world.step(30)
    assert len(world.fake.status_calls) == 3
    await world.step(31)
    assert len(world.fake.status_calls) == 6


async def test_interrupted_submission_becomes_uncertain_after_restart(world: World) -> None:
    job = await world.create()
    started = await world.store.apply_transition(
        job, Event.SUBMIT_STARTED, JobState.SUBMITTING, cause="test", now=world.clock.now()
    )
    assert started is not None
    await world.orchestrator.recover(sole_process=True)
    assert (await world.job(job.id)).state is JobState.UNCERTAIN
    await world.step(3600)
    assert world.fake.submits == 0


async def test_a_submit_cut_off_mid_call_is_uncertain_after_restart_despite_its_lease(
    world: World,
) -> None:
    """The lease a submit call holds its job with may still run when the process
    comes back: the call died with the process all the same."""
    job = await world.create()
    hold_s = world.orchestrator.config.submit_hold_s(job.provider)
    until = world.clock.now() + timedelta(seconds=hold_s)
    started = await world.store.apply_transition(
        job,
        Event.SUBMIT_STARTED,
        JobState.SUBMITTING,
        cause="test",
        now=world.clock.now(),
        changes=Changes(next_check_at=until, lease_until=until),
    )
    assert started is not None
    world.clock.advance(1)
    await world.orchestrator.recover(sole_process=True)
    assert (await world.job(job.id)).state is JobState.UNCERTAIN
    assert world.fake.submits == 0


async def test_idle_loop_sleeps_instead_of_spinning(world: World) -> None:
    calls = 0
    real = world.store.lease_due

    async def counting(**kwargs: object) -> list[Job]:
        nonlocal calls
        calls += 1
        return await real(**kwargs)  # type: ignore[arg-type]

    world.store.lease_due = counting  # type: ignore[method-assign]
    # Where the loop goes to sleep, and for how long: told by the loop itself, so
    # the test waits for that moment instead of for a while on the wall clock.
    naps: list[float] = []
    asleep = asyncio.Event()
    sleep_s = world.orchestrator._sleep_s

    async def napping() -> float:
        nap = await sleep_s()
        naps.append(nap)
        asleep.set()
        return nap

    world.orchestrator._sleep_s = napping  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(world.orchestrator.run_forever(stop, sole_process=True))
    async with asyncio.timeout(10):
        await asleep.wait()
    for _ in range(50):  # every chance to spin, had it not gone to sleep
        await asyncio.sleep(0)
    stop.set()
    await task
    assert calls == 1
    assert naps == [world.orchestrator.config.max_idle_s]  # nothing due: the longest nap


# --- store constraints never wedge a job ---------------------------------------------


async def test_two_photio_jobs_with_the_same_answer_both_succeed(world: World) -> None:
    first, second = await world.create("photio"), await world.create("photio")
    await world.step()
    done = [await world.job(first.id), await world.job(second.id)]
    assert [j.state for j in done] == [JobState.SUCCEEDED, JobState.SUCCEEDED]
    assert done[0].provider_job_id != done[1].provider_job_id
    assert all(j.result is not None and j.result.key.startswith(j.id) for j in done)


async def test_a_sync_answer_repeating_another_jobs_id_still_settles_its_job(
    world: World,
) -> None:
    # Artnex names each answer; should it repeat a request_id, the answer is still
    # the result of this job's call (paid for): the job settles, nothing waits.
    first, second = await world.create("artnex"), await world.create("artnex")
    await world.step()
    done = [await world.job(first.id), await world.job(second.id)]
    assert [j.state for j in done] == [JobState.SUCCEEDED, JobState.SUCCEEDED]
    ids = {j.provider_job_id for j in done}
    assert len(ids) == 2 and all(i is not None and i.startswith("req_same") for i in ids)


async def test_an_async_submit_answer_with_a_taken_id_leaves_the_job_uncertain_at_once(
    world: World,
) -> None:
    first, second = await world.create(), await world.create()
    await world.step()  # Upsampler answers "up-1" to both
    assert (await world.job(first.id)).state is JobState.SUBMITTED
    taken = await world.job(second.id)
    assert taken.state is JobState.UNCERTAIN  # not left submitting until its lease ends
    assert taken.failure is not None and "up-1" in taken.failure.message
    assert world.fake.submits == 2


async def test_a_callback_naming_another_jobs_provider_id_is_dead_and_blocks_nothing(
    world: World,
) -> None:
    holder = await world.create()
    await world.step()  # holds "up-1"
    world.fake.submit = lambda r: (_ for _ in ()).throw(httpx.ReadTimeout("no answer"))
    lost = await world.create()
    await world.step()
    assert (await world.job(lost.id)).state is JobState.UNCERTAIN
    bad = await world.orchestrator.receive(
        CallbackClaims("upsampler", lost.id), {}, success("up-1").content
    )
    good = await world.orchestrator.receive(
        CallbackClaims("upsampler", holder.id), {}, success("up-1").content
    )
    await world.step()
    stored = await world.store.get_delivery(bad.id)
    assert stored is not None and stored.status is DeliveryStatus.DEAD
    assert stored.error is not None and "up-1" in stored.error
    assert (await world.job(lost.id)).state is JobState.UNCERTAIN
    after = await world.store.get_delivery(good.id)
    assert after is not None and after.status is DeliveryStatus.APPLIED
    assert (await world.job(holder.id)).state is JobState.SUCCEEDED


async def test_a_submit_handler_that_crashes_leaves_the_job_uncertain_at_once(
    world: World,
) -> None:
    def bug(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug after the call went out")

    world.fake.submit = bug
    job = await world.create()
    await world.step()
    crashed = await world.job(job.id)
    assert crashed.state is JobState.UNCERTAIN  # not `submitting` until the lease runs out
    await world.step(3600)
    assert world.fake.submits == 1


# --- an account callback racing its submit answer -------------------------------------

TASK = "3f2a0c9e8b7d4e61a5c0d9e8f7a6b5c4"


class AnswerStoredAfterFirstLook:
    """The store, with a seam: right after the engine's first read for a callback
    (the job it names, or the atomic match), ``between`` runs once: the place where
    a submit answer stored by another task or process lands."""

    def __init__(self, inner: SQLiteStore) -> None:
        self.inner = inner
        self.between: Callable[[], Any] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def _seam(self) -> None:
        between, self.between = self.between, None
        if between is not None:
            await between()

    async def find_job(self, provider: str, provider_job_id: str) -> Job | None:
        found = await self.inner.find_job(provider, provider_job_id)
        await self._seam()
        return found

    async def match_callback(self, provider: str, provider_job_id: str) -> Any:
        found = await self.inner.match_callback(provider, provider_job_id)
        await self._seam()
        return found


async def test_an_account_callback_racing_its_submit_answer_is_applied(
    tmp_path: Path,
) -> None:
    seam: list[AnswerStoredAfterFirstLook] = []

    def wrap(store: SQLiteStore) -> AnswerStoredAfterFirstLook:
        seam.append(AnswerStoredAfterFirstLook(store))
        return seam[0]

    async with make_world(tmp_path, wrap) as world:
        job = await world.create("fotor")
        submitting = await world.store.apply_transition(
            job, Event.SUBMIT_STARTED, JobState.SUBMITTING, cause="submit", now=world.clock.now()
        )
        assert submitting is not None

        async def answer_stored() -> None:
            # What the submit side does when Fotor answers: store the task id, then
            # apply what waited for it (this delivery is not marked yet: not found).
            accepted = await world.store.apply_transition(
                submitting,
                Event.SUBMIT_ACCEPTED,
                JobState.SUBMITTED,
                cause="submit",
                now=world.clock.now(),
                changes=Changes(provider_job_id=TASK),
            )
            assert accepted is not None
            waiting = await world.store.deliveries_waiting_for(job.id, "fotor", TASK)
            assert waiting == []

        seam[0].between = answer_stored
        body = json.dumps(
            {"taskId": TASK, "status": 1, "type": "imgupscale", "resultUrl": RESULT_URL}
        ).encode()
        delivery = await world.orchestrator.receive(CallbackClaims("fotor", None), {}, body)
        await world.orchestrator.process_inbox()
        assert seam[0].between is None  # the seam was crossed
        stored = await world.store.get_delivery(delivery.id)
        assert stored is not None and stored.status is DeliveryStatus.APPLIED, stored
        assert stored.job_id == job.id
        await world.step()
        assert (await world.job(job.id)).state is JobState.SUCCEEDED


# --- a callback's change and its delivery's mark commit together ----------------------


class MarkOnItsOwnCrashes:
    """The store, where a delivery mark written on its own fails as if the process
    died right before it (after whatever was committed before)."""

    def __init__(self, inner: SQLiteStore) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def mark_delivery(self, *args: Any, **kwargs: Any) -> None:
        raise StoreUnavailable("the process died before this commit")


async def test_an_applied_callback_is_never_left_pending_by_a_crash(tmp_path: Path) -> None:
    async with make_world(tmp_path, MarkOnItsOwnCrashes) as world:
        job = await world.create()
        await world.step()
        delivery = await world.orchestrator.receive(
            CallbackClaims("upsampler", job.id), {}, success("up-1").content
        )
        with contextlib.suppress(StoreUnavailable):
            await world.orchestrator.process_inbox()
        stored = await world.store.get_delivery(delivery.id)
        assert (await world.job(job.id)).state is JobState.FETCHING
        assert stored is not None and stored.status is DeliveryStatus.APPLIED
        assert stored.job_id == job.id and stored.provider_job_id == "up-1"


async def test_replaying_a_callback_not_filed_yet_applies_it_once(world: World) -> None:
    """The callback's answer names its delivery: an operator may replay it before the
    inbox pass has moved it from the acknowledged callbacks to the deliveries. The
    replay's mark must land on the delivery, and the pass must not apply it again."""
    job = await world.create()
    await world.step()
    delivery = await world.orchestrator.receive(
        CallbackClaims("upsampler", job.id), {}, success("up-1").content
    )
    outcome = world.orchestrator.parts.metrics.callbacks_outcome.labels("upsampler", "applied")
    before = outcome._value.get()
    result = await operations.replay(world.orchestrator, delivery.id)
    assert result.after is DeliveryStatus.APPLIED, result
    stored = await world.store.get_delivery(delivery.id)
    assert stored is not None and stored.status is DeliveryStatus.APPLIED, stored
    assert stored.job_id == job.id
    await world.step()
    assert (await world.job(job.id)).state is JobState.SUCCEEDED
    assert outcome._value.get() - before == 1  # applied once, not again by the pass
    again = await world.store.get_delivery(delivery.id)
    assert again is not None and again.status is DeliveryStatus.APPLIED
