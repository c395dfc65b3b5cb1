"""The engine under random interleavings of everything that can happen to its jobs.

A hypothesis state machine drives one ``Orchestrator`` on a fake clock over a
real store (SQLite in a temporary directory, and PostgreSQL) with Upsampler,
Fotor and Photio faked at the HTTP level (``tests/integration/engine_world.py``).
Its steps, in any order: new jobs, some routed over every provider (each with
scripted submit answers:
accepted, refused, busy, timed out, or with its callback arriving before or
with the answer), runs of the loops, the clock moving on (polls, deadlines), providers
finishing jobs with zero, one or two callbacks, result URLs that expire,
duplicate, stale and out-of-order callbacks, callbacks for jobs nobody has,
cancels, operator replays of stored deliveries, and kills: the process dies at
a random store call (before it runs or just after it committed), and a new one
starts over the same database, as after ``kill -9``.

After every step, and once more after the clock has passed every deadline:

- a job has at most one terminal transition, and a final state never changes;
- a job's state is the last one of its history, and its events are exactly
  the events its transitions emit, in order;
- no provider received a job's submit twice (counted at the fake provider), and a
  routed job was taken by no more providers than it has had attempts;
- no job handler raised;
- once the loops are idle, no delivery is left ``pending`` (but for an
  account-wide callback still inside its wait for a submit answer), and no
  callback that names one of our jobs' provider ids is ``unmatched``;
- at the end no job is left short of a final state but ``uncertain``.

The example counts keep each store's passing run well under a minute (a failing
one takes longer: hypothesis shrinks it to a minimal history). To search longer
by hand::

    UPSCALE_STATEFUL_EXAMPLES=500 UPSCALE_STATEFUL_STEPS=60 \\
        .venv/bin/python -m pytest tests/integration/test_engine_stateful.py -p no:cacheprovider
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from orchestrator.common.clock import FakeClock
from orchestrator.core.config import SUBMIT_LEASE_MARGIN_S
from orchestrator.core.operations import replay
from orchestrator.domain.events import event_type
from orchestrator.store.protocol import DeliveryStatus
from schemas.api import CreateJob
from schemas.errors import NotFound
from schemas.jobs import Job, JobState
from tests.integration.engine_world import (
    JOB_DEADLINE_S,
    PLANS,
    PUBLIC,
    SCALE,
    SUBMIT_TIMEOUT_S,
    Cloud,
    Engine,
    RemoteJob,
    SimulatedCrash,
    open_engine,
)
from tests.postgres_db import migrated_and_empty

EXAMPLES = int(os.environ.get("UPSCALE_STATEFUL_EXAMPLES", "100"))
STEPS = int(os.environ.get("UPSCALE_STATEFUL_STEPS", "30"))
MAX_JOBS = 6
T = TypeVar("T")

SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    database=None,
    print_blob=True,
    # One failure, shrunk: several at once take minutes more to shrink.
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class ErrorLog(logging.Handler):
    """Errors the orchestrator logs, but for the kills the test itself causes."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, SimulatedCrash | asyncio.CancelledError):
            return
        job = getattr(record, "job_id", None)
        self.errors.append(f"{record.getMessage()} (job {job}): {exc!r}")


class EngineMachine(RuleBasedStateMachine):
    def __init__(self, database: Callable[[Path], Awaitable[str]], files: Path) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.files = files
        self.clock = FakeClock()
        self.cloud = Cloud()
        self.cloud.deliver = self._deliver
        self.cloud.early = self._early
        self.jobs: dict[str, str] = {}  # job id -> its input image URL
        self.final: dict[str, Job] = {}  # jobs seen in a final state, as first seen
        # Callbacks the receiver answered 200 for, in order (over every restart).
        self.acknowledged: list[str] = []
        self.idle = True
        self.broken = False
        self.serial = 0
        self.log = ErrorLog()
        logging.getLogger("orchestrator").addHandler(self.log)
        self.where = self.loop.run_until_complete(database(files))
        self.engine: Engine = self.loop.run_until_complete(self._start())

    # plumbing ----------------------------------------------------------------------------

    def do(self, step: Coroutine[Any, Any, T]) -> T:
        try:
            return self.loop.run_until_complete(step)
        except BaseException:
            self.broken = True
            raise

    async def _start(self) -> Engine:
        engine = await open_engine(self.where, self.files, self.clock, self.cloud)
        await engine.orchestrator.recover(sole_process=True)
        return engine

    async def _settle(self) -> None:
        await self.engine.orchestrator.run_until_idle()
        while self.cloud.racing:
            racing, self.cloud.racing = self.cloud.racing, []
            await asyncio.gather(*racing)
            await self.engine.orchestrator.run_until_idle()
        self.idle = True

    async def _deliver(self, remote: RemoteJob, body: bytes) -> None:
        """The receiver's part: check the URL's token, store the delivery."""
        orchestrator = self.engine.orchestrator
        if remote.provider == "upsampler":
            assert remote.webhook is not None
            url = remote.webhook
        else:
            url = orchestrator.account_callback_url(remote.provider)
        try:
            claims = orchestrator.callback_signer.verify(remote.provider, url.rsplit("/", 1)[-1])
        except NotFound:
            return  # the receiver answers 404 and stores nothing
        delivery = await orchestrator.receive(claims, {"content-type": "application/json"}, body)
        self.acknowledged.append(delivery.id)
        self.idle = False

    async def _early(self) -> None:
        """A callback raced the submit answer: the inbox is worked while the call waits."""
        await self.engine.orchestrator.process_inbox()

    def _pick(self, items: list[T], pick: int) -> T:
        return items[pick % len(items)]

    def _running(self) -> list[RemoteJob]:
        return [r for r in self.cloud.remote.values() if r.state == "running"]

    # steps -------------------------------------------------------------------------------

    @precondition(lambda self: len(self.jobs) < MAX_JOBS)
    @rule(
        provider=st.sampled_from(sorted(SCALE)),
        picture=st.integers(0, 1),
        plans=st.lists(st.sampled_from(PLANS), max_size=3),
        routed=st.booleans(),
    )
    def create_job(self, provider: str, picture: int, plans: list[str], routed: bool) -> None:
        self.serial += 1
        image = f"https://in.test/{self.serial}/picture-{picture}.png"
        self.cloud.plans[image] = deque(plans)

        async def go() -> None:
            # A routed job tries every provider, its own first; the plans are the
            # answers to its submits, whichever provider they go to.
            route = (provider, *(p for p in sorted(SCALE) if p != provider)) if routed else ()
            request = CreateJob(provider, SCALE[provider], {}, None, image, None, route=route)
            job, _ = await self.engine.orchestrator.create_job(request)
            self.jobs[job.id] = image
            self.idle = False

        self.do(go())

    @rule()
    def run(self) -> None:
        self.do(self._settle())

    @rule(seconds=st.sampled_from([1.0, 10.0, 21.0, 60.0, 300.0, 650.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.do(self._settle())

    @precondition(lambda self: bool(self._running()))
    @rule(
        pick=st.integers(0, 7),
        state=st.sampled_from(["succeeded", "failed"]),
        callbacks=st.integers(0, 2),
    )
    def provider_finishes(self, pick: int, state: str, callbacks: int) -> None:
        remote = self._pick(self._running(), pick)
        self.do(self.cloud.finish(remote, state, callbacks=callbacks))

    @precondition(lambda self: bool(self.cloud.remote))
    @rule(pick=st.integers(0, 7), kind=st.sampled_from(["again", "running"]))
    def stray_callback(self, pick: int, kind: str) -> None:
        """The last callback again (a duplicate, or stale after the end), or a
        progress callback (out of order once the job has ended)."""
        remote = self._pick(list(self.cloud.remote.values()), pick)
        if kind == "again" and remote.sent:
            body = remote.sent[-1]
        else:
            body = self.cloud.body(remote, state="running" if kind == "running" else None)
        self.do(self.cloud.send(remote, body))

    @precondition(lambda self: bool(self.cloud.remote))
    @rule(pick=st.integers(0, 7))
    def result_expires(self, pick: int) -> None:
        """The result host no longer serves a job's result (410 Gone)."""
        remote = self._pick(list(self.cloud.remote.values()), pick)
        self.cloud.expired.add(remote.pjid)

    @rule(provider=st.sampled_from(["upsampler", "fotor"]), state=st.sampled_from(["succeeded"]))
    def unknown_callback(self, provider: str, state: str) -> None:
        self.serial += 1
        orchestrator = self.engine.orchestrator
        webhook = None
        if provider == "upsampler":
            expires = self.clock.now().timestamp() + 3600
            token = orchestrator.callback_signer.for_job(provider, f"job_{self.serial}", expires)
            webhook = f"{PUBLIC}/callbacks/{provider}/{token}"
        stranger = RemoteJob(provider, f"stranger-{self.serial}", "", webhook, state=state)
        self.do(self.cloud.send(stranger, self.cloud.body(stranger)))

    @precondition(lambda self: bool(self.jobs))
    @rule(pick=st.integers(0, 7))
    def cancel(self, pick: int) -> None:
        job_id = self._pick(sorted(self.jobs), pick)

        async def go() -> None:
            job = await self.engine.store.inner.get_job(job_id)
            assert job is not None
            await self.engine.orchestrator.cancel(job)

        self.do(go())

    @rule(pick=st.integers(0, 15))
    def operator_replay(self, pick: int) -> None:
        """An operator replays a delivery: one filed, or one just acknowledged (its id is
        in the callback's answer) that the inbox pass may not have filed yet."""

        async def go() -> None:
            found = await self.engine.store.inner.list_deliveries(limit=1000)
            ids = list(dict.fromkeys([*self.acknowledged, *(d.id for d in found)]))
            if ids:
                await replay(self.engine.orchestrator, self._pick(ids, pick))

        self.do(go())

    @rule(
        calls=st.integers(0, 40),
        before=st.booleans(),
        seconds=st.sampled_from([0.0, 21.0, 60.0]),
    )
    def kill_and_restart(self, calls: int, before: bool, seconds: float) -> None:
        """The process dies at a store call (or idle, if it gets that far), a new one starts."""

        async def go() -> None:
            self.engine.store.kill_after(calls, before=before)
            self.clock.advance(seconds)
            with contextlib.suppress(SimulatedCrash):
                await self.engine.orchestrator.run_until_idle()
            racing, self.cloud.racing = self.cloud.racing, []
            await asyncio.gather(*racing, return_exceptions=True)
            await self.engine.close()
            self.engine = await self._start()
            await self._settle()

        self.do(go())

    # invariants --------------------------------------------------------------------------

    @invariant()
    def holds(self) -> None:
        self.do(self.check())

    async def check(self) -> None:
        store = self.engine.store.inner
        # Filing moves a callback from `received` to the deliveries in one transaction:
        # whatever was killed where, an acknowledged callback is in one of the two.
        for delivery_id in self.acknowledged:
            assert await store.get_delivery(delivery_id) is not None, (
                f"acknowledged delivery {delivery_id} is in neither table"
            )
        changed_by: dict[str, list[str]] = {}
        for job_id, image in self.jobs.items():
            job = await store.get_job(job_id)
            assert job is not None
            history = await store.history(job_id)
            states = [h.to_state.value for h in history]
            assert history and history[-1].to_state is job.state, (job.state, states)
            for h in history:
                kind, _, delivery_id = h.cause.partition(":")
                if kind in ("callback", "replay", "inject"):
                    changed_by.setdefault(delivery_id, []).append(f"{job_id}: {states}")
            ends = [h for h in history if h.to_state.terminal]
            assert len(ends) <= 1, f"{job_id} ended more than once: {states}"
            first = self.final.get(job_id)
            if first is not None:
                now = (job.state, job.failure, job.result)
                assert now == (first.state, first.failure, first.result), (
                    f"{job_id}: a final state changed: {first.state} -> {job.state}"
                )
            elif job.state.terminal:
                self.final[job_id] = job
            events = [e.type for e in await store.list_events(job_id=job_id, limit=1000)]
            emitted: list[str | None] = []
            for h in history:
                if h.event == "fail_over":
                    emitted += ["job.attempt_failed", "job.failed_over"]
                else:
                    emitted.append(event_type(h.from_state, h.to_state))
            assert events == [e for e in emitted if e is not None], (job_id, events, states)
            taken = {p: n for (p, i), n in self.cloud.taken.items() if i == image}
            assert all(n <= 1 for n in taken.values()), f"{job_id} was submitted twice: {taken}"
            # One attempt at a time: no provider took the job before the attempts
            # it had before this one were known dead.
            assert sum(taken.values()) <= job.attempt, (job_id, taken, job.attempt, states)
            assert len(job.past_attempts) == job.attempt - 1
        twice = {d: jobs for d, jobs in changed_by.items() if len(jobs) > 1}
        assert not twice, f"deliveries applied more than once: {twice}"
        assert not self.log.errors, self.log.errors
        if self.idle:
            await self._check_idle()

    async def _check_idle(self) -> None:
        store = self.engine.store.inner
        hold = timedelta(seconds=SUBMIT_TIMEOUT_S + SUBMIT_LEASE_MARGIN_S)
        waiting_since = self.clock.now() - hold
        pending = await store.list_deliveries(status=DeliveryStatus.PENDING, limit=1000)
        filed = {d.id for d in pending}
        for delivery_id in self.acknowledged:  # and those still in `received`
            got = await store.get_delivery(delivery_id)
            if got is not None and got.status is DeliveryStatus.PENDING and got.id not in filed:
                pending.append(got)
        for delivery in pending:
            job = delivery.job_id or delivery.claimed_job_id
            state = None
            if job is not None:
                found = await store.get_job(job)
                state = found.state.value if found is not None else None
            waits = job is None and delivery.received_at >= waiting_since
            assert waits, (
                f"delivery {delivery.id} ({delivery.provider}, job {job} in {state}) "
                "is left pending with the loops idle"
            )
        for delivery in await store.list_deliveries(status=DeliveryStatus.UNMATCHED, limit=1000):
            if delivery.provider_job_id is None:
                continue
            ours = await store.find_job(delivery.provider, delivery.provider_job_id)
            assert ours is None, (
                f"delivery {delivery.id} for our job {ours.id} ({ours.state}) ended unmatched"
            )

    async def finish(self) -> None:
        """Past every deadline: each job has ended, or is uncertain."""
        for _ in range(3):
            self.clock.advance(JOB_DEADLINE_S)
            await self._settle()
            await self.check()
        for job_id in self.jobs:
            job = await self.engine.store.inner.get_job(job_id)
            assert job is not None
            assert job.state.terminal or job.state is JobState.UNCERTAIN, (job_id, job.state)

    def teardown(self) -> None:
        try:
            if not self.broken:
                self.do(self.finish())
        finally:
            try:
                self.loop.run_until_complete(self.engine.close())
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()
                logging.getLogger("orchestrator").removeHandler(self.log)


def _machines(database: Callable[[Path], Awaitable[str]], tmp_path: Path) -> Callable[[], Any]:
    """A new machine per example, each with a directory of its own."""
    numbers = itertools.count()

    def machine() -> EngineMachine:
        return EngineMachine(database, tmp_path / f"example-{next(numbers)}")

    return machine


@pytest.mark.timeout(900)
def test_engine_over_sqlite(tmp_path: Path) -> None:
    async def database(files: Path) -> str:
        return str(files / "engine.db")

    run_state_machine_as_test(_machines(database, tmp_path), settings=SETTINGS)


@pytest.mark.timeout(900)
def test_engine_over_postgres(tmp_path: Path, postgres_database: str) -> None:
    async def database(files: Path) -> str:
        return await migrated_and_empty(postgres_database)

    run_state_machine_as_test(_machines(database, tmp_path), settings=SETTINGS)


# Found by the machine above, kept as plain examples ----------------------------------------


async def test_a_kill_between_an_inline_result_and_its_end_leaves_no_job_behind(
    tmp_path: Path,
) -> None:
    """Photio's answer is the image: it is stored, the job moves to ``fetching``,
    then to ``succeeded``. A process killed between those two commits must not
    leave the job in ``fetching`` for ever, its paid result unrecorded."""
    clock, cloud = FakeClock(), Cloud()
    where = str(tmp_path / "engine.db")
    engine = await open_engine(where, tmp_path, clock, cloud)
    try:
        request = CreateJob("photio", 2.0, {}, None, "https://in.test/1/picture-0.png", None)
        job, _ = await engine.orchestrator.create_job(request)
        # submitting, then fetching (committed), then the kill
        engine.store.kill_after(1, before=False, verb="apply_transition")
        with pytest.raises(SimulatedCrash):
            await engine.orchestrator.run_until_idle()
        await engine.close()
        engine = await open_engine(where, tmp_path, clock, cloud)
        await engine.orchestrator.recover(sole_process=True)
        await engine.orchestrator.run_until_idle()
        clock.advance(2 * JOB_DEADLINE_S)
        await engine.orchestrator.run_until_idle()
        done = await engine.store.inner.get_job(job.id)
        assert done is not None
        assert done.state is JobState.SUCCEEDED
        assert done.result is not None and (done.result.width, done.result.height) == (8, 6)
        assert cloud.submits["https://in.test/1/picture-0.png"] == 1
    finally:
        await engine.close()


@pytest.mark.parametrize(
    ("verb", "before"),
    [
        ("admit_received", True),  # killed before filing: still acknowledged
        ("admit_received", False),  # killed once filed, before it was applied
        ("apply_transition", False),  # killed once applied and marked together
    ],
)
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_kill_around_filing_and_applying_a_callback_loses_and_repeats_nothing(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str, verb: str, before: bool
) -> None:
    """An acknowledged callback is filed among the deliveries in one transaction and
    applied with its mark in another. Whichever commit the process dies around, the
    callback is in exactly one of the two tables, and after the restart it is
    applied once."""
    if kind == "sqlite":
        where = str(tmp_path / "engine.db")
    else:
        where = await migrated_and_empty(request.getfixturevalue("postgres_database"))
    clock, cloud = FakeClock(), Cloud()
    engine = await open_engine(where, tmp_path, clock, cloud)
    try:
        image = "https://in.test/1/picture-0.png"
        job, _ = await engine.orchestrator.create_job(
            CreateJob("upsampler", 2.0, {}, None, image, None)
        )
        await engine.orchestrator.run_until_idle()
        (remote,) = cloud.remote.values()
        remote.state = "succeeded"
        assert remote.webhook is not None
        claims = engine.orchestrator.callback_signer.verify(
            "upsampler", remote.webhook.rsplit("/", 1)[-1]
        )
        delivery = await engine.orchestrator.receive(claims, {}, cloud.body(remote))
        engine.store.kill_after(0, before=before, verb=verb)
        with pytest.raises(SimulatedCrash):
            await engine.orchestrator.run_until_idle()
        store = engine.store.inner
        stored = await store.get_delivery(delivery.id)
        assert stored is not None, "an acknowledged callback is in neither table"
        pending = await store.count_deliveries(DeliveryStatus.PENDING)
        applied = verb == "apply_transition"
        assert pending == (0 if applied else 1), f"counted {pending} times as pending"
        assert stored.status is (DeliveryStatus.APPLIED if applied else DeliveryStatus.PENDING)
        await engine.close()

        engine = await open_engine(where, tmp_path, clock, cloud)
        await engine.orchestrator.recover(sole_process=True)
        await engine.orchestrator.run_until_idle()
        store = engine.store.inner
        done = await store.get_job(job.id)
        assert done is not None and done.state is JobState.SUCCEEDED, done
        final = await store.get_delivery(delivery.id)
        assert final is not None and final.status is DeliveryStatus.APPLIED, final
        assert await store.count_deliveries() == 1
        causes = [h.cause for h in await store.history(job.id)]
        assert causes.count(f"callback:{delivery.id}") == 1, causes
        assert cloud.submits[image] == 1
    finally:
        await engine.close()
