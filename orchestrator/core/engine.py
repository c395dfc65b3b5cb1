"""The orchestrator: takes jobs in, submits them, receives and polls, fetches results.

Every piece of work is a job whose ``next_check_at`` is due: ``queued`` jobs are
submitted, ``submitted`` jobs polled, ``fetching`` jobs downloaded, and a
``submitting`` job whose lease ran out was cut off mid-call and becomes
``uncertain``. One loop leases due jobs and the callback inbox feeds the same
``apply_update``; it sleeps until the next job is due or a signal wakes it.

This module keeps the loop and the dispatch; each kind of work has a room of its
own in ``orchestrator/core/``. ``Orchestrator`` is the face the rest of the
service sees.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from datetime import timedelta

from orchestrator.common.clock import Clock
from orchestrator.common.metrics import Metrics
from orchestrator.core.applying import transition
from orchestrator.core.budgets import Budgets
from orchestrator.core.config import EngineConfig
from orchestrator.core.fetching import ResultCollector
from orchestrator.core.inbox import Inbox
from orchestrator.core.inputs import InputStore
from orchestrator.core.intake import Intake
from orchestrator.core.moves import back_off, uncertain
from orchestrator.core.parts import Fetcher, Parts, log
from orchestrator.core.polling import Poller
from orchestrator.core.routing import Router
from orchestrator.core.submitting import Submitter
from orchestrator.core.urls import Urls
from orchestrator.domain.states import Event
from orchestrator.providers.base import Provider
from orchestrator.security.signing import CallbackClaims, CallbackSigner, InputSigner
from orchestrator.store.protocol import Delivery, DeliveryStatus, Store
from schemas.api import CreateJob
from schemas.jobs import Job, JobState, ProviderUpdate


class Orchestrator:
    def __init__(
        self,
        *,
        config: EngineConfig,
        store: Store,
        providers: Mapping[str, Provider],
        fetcher: Fetcher,
        inputs: InputStore,
        callback_signer: CallbackSigner,
        input_signer: InputSigner,
        budgets: Budgets,
        clock: Clock,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.providers = providers
        self.fetcher = fetcher
        self.inputs = inputs
        self.callback_signer = callback_signer
        self.input_signer = input_signer
        self.budgets = budgets
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(config.concurrency)
        self.parts = Parts(
            config=config,
            store=store,
            providers=providers,
            fetcher=fetcher,
            inputs=inputs,
            budgets=budgets,
            metrics=self.metrics,
            clock=clock,
            rng=self.rng,
            wake=self.wake,
            router=Router(
                store=store,
                clock=clock,
                caps=config.spend_caps,
                policy=config.cooldown,
                submit_tries=config.failover_submit_tries,
            ),
        )
        self.urls = Urls(
            public_base=config.public_base,
            callback_signer=callback_signer,
            input_signer=input_signer,
            clock=clock,
            input_url_ttl_s=config.input_url_ttl_s,
        )
        self.intake = Intake(self.parts)
        self.inbox = Inbox(self.parts)
        # The callback route's one call (``Inbox.acknowledge``), bound without a
        # wrapper: it is made once per callback.
        self.acknowledge = self.inbox.acknowledge
        self._submitter = Submitter(self.parts, self.urls)
        self._poller = Poller(self.parts)
        self._collector = ResultCollector(self.parts)

    # intake ------------------------------------------------------------------

    async def create_job(
        self, request: CreateJob, *, idempotency_key: str | None = None
    ) -> tuple[Job, bool]:
        return await self.intake.create_job(request, idempotency_key=idempotency_key)

    async def cancel(self, job: Job) -> Job:
        applied = await transition(self.store, job, Event.CANCEL, cause="api", now=self.clock.now())
        return applied.job

    # URLs and callbacks ----------------------------------------------------------

    def callback_url(self, provider: str, job: Job) -> str:
        return self.urls.callback_url(provider, job)

    def account_callback_url(self, provider: str) -> str:
        return self.urls.account_callback_url(provider)

    def input_url(self, job: Job) -> str | None:
        return self.urls.input_url(job)

    async def receive(
        self,
        claims: CallbackClaims,
        headers: Mapping[str, str],
        body: bytes,
        *,
        source: str = "live",
    ) -> Delivery:
        """Store a raw delivery (the caller answers 2xx only after this returns)."""
        return await self.inbox.receive(claims, headers, body, source=source)

    async def process_inbox(self, *, limit: int = 100) -> int:
        return await self.inbox.process(limit=limit)

    async def process_delivery(
        self, delivery: Delivery, *, depth: int = 0, cause: str | None = None
    ) -> DeliveryStatus:
        return await self.inbox.process_delivery(delivery, depth=depth, cause=cause)

    async def operator_poll(self, job: Job, *, call: str = "reconcile") -> ProviderUpdate:
        """One status call an operator asked for, within the provider's status budget."""
        return await self._poller.operator_poll(job, call=call)

    # due work --------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def recover(self, *, sole_process: bool) -> None:
        """After a restart: submit calls that were cut off leave their jobs uncertain."""
        now = self.clock.now()
        if not sole_process:
            return
        await self.store.clear_leases()
        # The sole process: every lease on a ``submitting`` job was taken by a run of
        # it that is gone, and ends by now plus the longest lease there is. So the
        # submits whose leases end by then are all of them. (One held longer, under
        # an earlier setting, is cut off all the same once its lease runs out.)
        latest_end = now + timedelta(seconds=self.config.longest_lease_s)
        for job in await self.store.interrupted_submissions(now=latest_end):
            await self._interrupted(job)

    async def run_due(self, *, limit: int = 64) -> int:
        """Lease what is due and start handling it; returns how many jobs were started."""
        free = self.config.concurrency - len(self._inflight)
        if free <= 0:
            return 0
        jobs = await self.store.lease_due(
            now=self.clock.now(), lease_s=self.config.lease_s, limit=min(limit, free)
        )
        for job in jobs:
            task = asyncio.create_task(self._handle(job))
            self._inflight.add(task)
            task.add_done_callback(self._done)
        return len(jobs)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self.wake()
        if not task.cancelled() and task.exception() is not None:
            log.error("job.handler_crashed", exc_info=task.exception())

    async def _handle(self, job: Job) -> None:
        async with self._slots:
            try:
                if job.state is JobState.QUEUED:
                    await self._submitter.submit(job)
                    await self.inbox.bind_waiting(job.id)
                elif job.state is JobState.SUBMITTING:
                    await self._interrupted(job)
                elif job.state is JobState.SUBMITTED:
                    await self._poller.poll(job)
                elif job.state is JobState.FETCHING:
                    await self._collector.fetch(job)
            except Exception:
                log.exception(
                    "job.handler_crashed",
                    extra={"job_id": job.id, "provider": job.provider, "action": "crashed"},
                )
                await self._crashed(job)

    async def _crashed(self, job: Job) -> None:
        """A bug must not park the job until its lease runs out. A submit cut off by
        it may have reached the provider: the job is uncertain now, as after a
        restart. Anything else is looked at again later."""
        current = await self.store.get_job(job.id) or job
        if current.state is JobState.SUBMITTING and job.state is JobState.QUEUED:
            await self._interrupted(current)
            return
        await back_off(self.parts, current)

    async def _interrupted(self, job: Job) -> None:
        """A submit call was cut off (a restart, a crash, a lease run out)."""
        await uncertain(
            self.parts,
            job,
            "the submit call was cut off; the provider may have the job and bill it",
            cause="recovery",
        )
        await self.inbox.bind_waiting(job.id)

    async def run_until_idle(self, *, max_rounds: int = 10_000) -> None:
        """Process everything that is due now, then return (for tests and batch use)."""
        for _ in range(max_rounds):
            started = await self.process_inbox() + await self.run_due()
            if self._inflight:
                await asyncio.wait(set(self._inflight))
                continue
            if started == 0:
                return

    async def run_forever(self, stop: asyncio.Event, *, sole_process: bool) -> None:
        await self.recover(sole_process=sole_process)
        while not stop.is_set():
            self._wake.clear()
            try:
                started = await self.process_inbox() + await self.run_due()
            except Exception:
                log.exception("loop.error")
                started = 0
                await asyncio.sleep(1.0)
            if started:
                continue
            timeout = await self._sleep_s()
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait(
                {waiter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()
            stopper.cancel()
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.wait(set(self._inflight))

    async def _sleep_s(self) -> float:
        longest = self.config.max_idle_s
        if len(self._inflight) >= self.config.concurrency:
            return longest
        nxt = await self.store.next_due_at()
        if nxt is None:
            return longest
        return max(0.0, min(longest, (nxt - self.clock.now()).total_seconds()))
