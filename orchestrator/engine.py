"""The orchestrator: takes jobs in, submits them, receives and polls, fetches results.

Every piece of work is a job whose ``next_check_at`` is due: ``queued`` jobs are
submitted, ``submitted`` jobs polled, ``fetching`` jobs downloaded, and a
``submitting`` job whose lease ran out was cut off mid-call and becomes
``uncertain``. One loop leases due jobs and the callback inbox feeds the same
``apply_update``; it sleeps until the next job is due or a signal wakes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from orchestrator.applying import Applied, apply_update, transition
from orchestrator.backoff import PollPolicy
from orchestrator.budgets import Budgets
from orchestrator.clock import Clock
from orchestrator.ids import new_id
from orchestrator.inputs import InputStore
from orchestrator.metrics import Metrics
from orchestrator.outbound.subscriptions import new_subscription
from orchestrator.providers.base import Accepted, Provider, SubmitRequest
from orchestrator.signing import CallbackClaims, CallbackSigner, InputSigner
from orchestrator.states import Event, awaits_submit_answer
from orchestrator.store.outbox import Subscription
from orchestrator.store.protocol import (
    Changes,
    Delivery,
    DeliveryMark,
    DeliveryStatus,
    NewDelivery,
    NewJob,
    Store,
)
from orchestrator.store_retry import STORE_RETRY_S, until_stored
from schemas.api import CreateJob
from schemas.errors import (
    FetchError,
    ProviderError,
    ProviderJobIdTaken,
    ProviderRejected,
    ProviderThrottled,
    ProviderUncertain,
    RejectedPayload,
    StoreUnavailable,
)
from schemas.jobs import (
    Failure,
    FailureReason,
    Job,
    JobState,
    ProviderUpdate,
    ResultInfo,
    UpdateStatus,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long after a job's deadline its callback URL still works: a late success
# is still worth having while the provider's result URL lives.
CALLBACK_GRACE_S = 6 * 3600.0
# Extra time a submit call holds its job beyond the call's own timeout.
SUBMIT_LEASE_MARGIN_S = 30.0


class Fetcher(Protocol):
    async def fetch(self, url: str, key_stem: str) -> ResultInfo: ...

    async def store_bytes(self, data: bytes, key_stem: str) -> ResultInfo: ...


@dataclass(frozen=True, slots=True)
class EngineConfig:
    public_base: str
    job_deadline_s: float
    # How long a submit call may take; per provider where it differs (a synchronous
    # provider answers with the result, so its call may take much longer).
    submit_timeout_s: float
    input_url_ttl_s: float
    poll: PollPolicy
    concurrency: int = 8
    verify_callbacks: frozenset[str] = frozenset()
    stuck_after_s: float = 900.0
    # The longest the loop sleeps with nothing due. In one process every callback
    # wakes it at once; a worker beside separate web processes looks this often.
    max_idle_s: float = 60.0
    # How long a worker holds a due job; a dead worker's jobs are taken over after it.
    lease_s: float = 300.0
    submit_timeouts_s: Mapping[str, float] = field(default_factory=dict)

    def submit_hold_s(self, provider: str) -> float:
        """How long a job is held in ``submitting`` for its provider's call: a worker
        killed during the call leaves the job ``uncertain`` once this has passed."""
        return self.submit_timeouts_s.get(provider, self.submit_timeout_s) + SUBMIT_LEASE_MARGIN_S

    @property
    def longest_submit_hold_s(self) -> float:
        """The longest of them: how long an answer to any submit may still come."""
        longest = max([self.submit_timeout_s, *self.submit_timeouts_s.values()])
        return longest + SUBMIT_LEASE_MARGIN_S

    # Waits between attempts to record a provider's submit answer the store refused.
    store_retry_s: tuple[float, ...] = STORE_RETRY_S


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

    # intake ------------------------------------------------------------------

    async def create_job(
        self, request: CreateJob, *, idempotency_key: str | None = None
    ) -> tuple[Job, bool]:
        provider = self.providers[request.provider]
        options = provider.validate_options(request.scale, request.options)
        now = self.clock.now()
        job_id = new_id("job", now)
        image_digest = (
            hashlib.sha256(request.image_bytes).hexdigest() if request.image_bytes else None
        )
        staged = request.image_staged
        if staged is not None:
            image_digest = staged.sha256
        hashed: list[Any] = [
            request.provider,
            request.scale,
            options,
            request.metadata,
            request.image_url,
            image_digest,
        ]
        if request.webhook_url is not None:
            # Part of what was asked: the same key with another webhook is a conflict.
            # (Only when set, so the digests of jobs stored before stay the same.)
            hashed.append({"webhook_url": request.webhook_url})
        digest = hashlib.sha256(
            json.dumps(hashed, sort_keys=True, default=str).encode()
        ).hexdigest()
        input_key = None
        if request.image_bytes is not None:
            self.inputs.check(request.image_bytes)
        if request.image_bytes is not None:
            input_key = await self.inputs.save(job_id, request.image_bytes)
        if staged is not None:
            input_key = await self.inputs.save_staged(job_id, staged)
        new = NewJob(
            id=job_id,
            provider=request.provider,
            scale=request.scale,
            options=options,
            metadata=request.metadata,
            input_url=request.image_url,
            input_key=input_key,
            created_at=now,
            deadline_at=now + timedelta(seconds=self.config.job_deadline_s),
            idempotency_key=idempotency_key,
            request_hash=digest,
        )
        hook = None
        if request.webhook_url is not None:
            # The job's own subscription exists before the job, so it gets job.queued too.
            hook = new_subscription(
                new_id("sub", now), request.webhook_url, None, now=now, job_id=job_id
            )
            await self.store.create_subscription(hook)
        try:
            job, created = await self.store.create_job(new)
        except BaseException:
            await self._undo_intake(input_key, hook)
            raise
        if not created:
            await self._undo_intake(input_key, hook)
        if created:
            log.info(
                "job.created",
                extra={"job_id": job.id, "provider": job.provider, "action": "created"},
            )
            self.wake()
        return job, created

    async def _undo_intake(self, input_key: str | None, hook: Subscription | None) -> None:
        if input_key is not None:
            await self.inputs.discard(input_key)
        if hook is not None:
            await self.store.delete_subscription(hook.id, now=self.clock.now())

    async def cancel(self, job: Job) -> Job:
        applied = await transition(self.store, job, Event.CANCEL, cause="api", now=self.clock.now())
        return applied.job

    # callbacks -----------------------------------------------------------------

    def callback_url(self, provider: str, job: Job) -> str:
        expires = job.deadline_at.timestamp() + CALLBACK_GRACE_S
        token = self.callback_signer.for_job(provider, job.id, expires)
        return f"{self.config.public_base}/callbacks/{provider}/{token}"

    def account_callback_url(self, provider: str) -> str:
        token = self.callback_signer.for_account(provider)
        return f"{self.config.public_base}/callbacks/{provider}/{token}"

    def input_url(self, job: Job) -> str | None:
        if job.input_url is not None:
            return job.input_url
        if job.input_key is None:
            return None
        expires = self.clock.now().timestamp() + self.config.input_url_ttl_s
        return f"{self.config.public_base}/inputs/{self.input_signer.sign(job.input_key, expires)}"

    async def receive(
        self,
        claims: CallbackClaims,
        headers: Mapping[str, str],
        body: bytes,
        *,
        source: str = "live",
    ) -> Delivery:
        """Store a raw delivery (the caller answers 2xx only after this returns)."""
        now = self.clock.now()
        dedupe = hashlib.sha256(
            f"{claims.provider}\0{claims.job_id or ''}\0".encode() + body
        ).hexdigest()
        self.metrics.callbacks_received.labels(claims.provider).inc()
        delivery = await self.store.record_delivery(
            NewDelivery(
                id=new_id("dlv", now),
                provider=claims.provider,
                claimed_job_id=claims.job_id,
                received_at=now,
                headers=dict(headers),
                body=body,
                dedupe_key=dedupe,
                source=source,
            )
        )
        if delivery.status is DeliveryStatus.DUPLICATE:
            self.metrics.callbacks_outcome.labels(claims.provider, "duplicate").inc()
            log.info(
                "callback.duplicate",
                extra={
                    "provider": claims.provider,
                    "job_id": claims.job_id,
                    "action": "duplicate",
                    "delivery_id": delivery.id,
                },
            )
        self.wake()
        return delivery

    async def process_inbox(self, *, limit: int = 100) -> int:
        now = self.clock.now()
        hold = timedelta(seconds=self.config.longest_submit_hold_s)
        await self.store.expire_waiting(before=now - hold, now=now)
        pending = await self.store.pending_deliveries(limit=limit)
        # And those left waiting by a process that died between storing their job's
        # submit answer and applying them (its own pass would have bound them).
        pending += await self.store.stranded_waiting(limit=limit)
        for delivery in pending:
            await self.process_delivery(delivery)
        return len(pending)

    async def _recheck(self, delivery: Delivery, depth: int) -> DeliveryStatus:
        """A delivery was just left waiting for its job's submit answer. If that
        answer was stored meanwhile (after we looked, before our mark), the submit
        side may have missed the mark: look once more, so nothing waits forever."""
        if depth > 0:
            return DeliveryStatus.PENDING
        fresh = await self.store.get_delivery(delivery.id)
        if fresh is None or fresh.status is not DeliveryStatus.PENDING:
            return DeliveryStatus.PENDING
        return await self.process_delivery(fresh, depth=depth + 1)

    async def process_delivery(
        self, delivery: Delivery, *, depth: int = 0, cause: str | None = None
    ) -> DeliveryStatus:
        now = self.clock.now()
        provider = self.providers.get(delivery.provider)
        if provider is None:
            await self._mark(delivery, DeliveryStatus.DEAD, error="unknown provider")
            return DeliveryStatus.DEAD
        try:
            update = provider.parse_callback(delivery.body)
        except RejectedPayload as exc:
            await self._mark(delivery, DeliveryStatus.DEAD, error=f"unparseable: {exc.message}")
            return DeliveryStatus.DEAD
        job: Job | None = None
        submit_in_flight = False
        if delivery.claimed_job_id is not None:
            job = await self.store.get_job(delivery.claimed_job_id)
        elif update.provider_job_id is not None:
            # One read: a submit answer stored meanwhile shows as the job or as the
            # submit in flight, never as neither.
            match = await self.store.match_callback(delivery.provider, update.provider_job_id)
            job, submit_in_flight = match.job, match.submit_in_flight
        if job is None:
            if submit_in_flight:
                # An account-wide callback may have raced a submit answer still on
                # its way: keep it until that answer is stored (or too long passes).
                await self._mark(
                    delivery, DeliveryStatus.PENDING, provider_job_id=update.provider_job_id
                )
                return await self._recheck(delivery, depth)
            await self._mark(
                delivery,
                DeliveryStatus.UNMATCHED,
                provider_job_id=update.provider_job_id,
                error="no job of ours matches this callback",
            )
            return DeliveryStatus.UNMATCHED
        if (
            job.provider_job_id is not None
            and update.provider_job_id is not None
            and job.provider_job_id != update.provider_job_id
        ):
            await self._mark(
                delivery,
                DeliveryStatus.DEAD,
                job_id=job.id,
                provider_job_id=update.provider_job_id,
                error="callback carries another provider job id than the job's",
            )
            return DeliveryStatus.DEAD
        if awaits_submit_answer(job.state):
            # It raced our submit answer: keep it until that answer is stored.
            await self._mark(
                delivery,
                DeliveryStatus.PENDING,
                job_id=job.id,
                provider_job_id=update.provider_job_id,
            )
            return await self._recheck(delivery, depth)
        # The delivery's outcome is written in the transaction of the change it
        # makes: a crash cannot leave an applied delivery pending, or the reverse.
        applied = DeliveryMark(
            delivery.id,
            DeliveryStatus.APPLIED,
            now,
            job_id=job.id,
            provider_job_id=update.provider_job_id,
        )
        if (
            update.status is not UpdateStatus.RUNNING
            and job.provider in self.config.verify_callbacks
            and job.state is JobState.SUBMITTED
        ):
            # The callback is unsigned: treat it as a hint and ask the provider's
            # authenticated status endpoint now, instead of trusting its body.
            checked = await self.store.update_job(
                job, Changes(next_check_at=now), now=now, mark=applied
            )
            written = checked is not None
            self.wake()
        else:
            try:
                done = await apply_update(
                    self.store,
                    job,
                    update,
                    cause=cause or f"callback:{delivery.id}",
                    now=now,
                    mark=applied,
                )
            except ProviderJobIdTaken as exc:
                # Nothing was written: the job stays as it was, the delivery is kept.
                await self._mark(
                    delivery,
                    DeliveryStatus.DEAD,
                    job_id=job.id,
                    provider_job_id=update.provider_job_id,
                    error=exc.message,
                )
                return DeliveryStatus.DEAD
            written = done.changed
        if written:
            self._processed(delivery, applied)
        else:
            # It changed nothing (a duplicate or late signal): applying it again
            # after a crash changes nothing either, so the mark may come alone.
            await self._mark(
                delivery,
                DeliveryStatus.APPLIED,
                job_id=job.id,
                provider_job_id=update.provider_job_id,
            )
        return DeliveryStatus.APPLIED

    async def _mark(
        self,
        delivery: Delivery,
        status: DeliveryStatus,
        *,
        job_id: str | None = None,
        provider_job_id: str | None = None,
        error: str | None = None,
    ) -> None:
        mark = DeliveryMark(delivery.id, status, self.clock.now(), job_id, provider_job_id, error)
        await self.store.mark_delivery(
            mark.delivery_id,
            mark.status,
            now=mark.at,
            job_id=mark.job_id,
            provider_job_id=mark.provider_job_id,
            error=mark.error,
        )
        self._processed(delivery, mark)

    def _processed(self, delivery: Delivery, mark: DeliveryMark) -> None:
        """Count and log a delivery's outcome, once it is written."""
        if mark.status is not DeliveryStatus.PENDING:
            self.metrics.callbacks_outcome.labels(delivery.provider, mark.status.value).inc()
        log.info(
            "callback.processed",
            extra={
                "provider": delivery.provider,
                "job_id": mark.job_id,
                "action": mark.status.value,
                "delivery_id": delivery.id,
                "error": mark.error,
            },
        )

    # due work --------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def recover(self, *, sole_process: bool) -> None:
        """After a restart: submit calls that were cut off leave their jobs uncertain."""
        now = self.clock.now()
        if not sole_process:
            return
        await self.store.clear_leases()
        far = now + timedelta(days=36500)
        for job in await self.store.interrupted_submissions(now=far):
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
                    await self._submit(job)
                    await self._bind_waiting(job.id)
                elif job.state is JobState.SUBMITTING:
                    await self._interrupted(job)
                elif job.state is JobState.SUBMITTED:
                    await self._poll(job)
                elif job.state is JobState.FETCHING:
                    await self._fetch(job)
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
        attempts = current.attempts + 1
        await self._reschedule(
            current, self.config.poll.delay_s(attempts, self.rng), attempts=attempts
        )

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

    # handlers ---------------------------------------------------------------------

    async def _reschedule(self, job: Job, seconds: float, *, attempts: int | None = None) -> None:
        now = self.clock.now()
        changes = Changes(
            next_check_at=now + timedelta(seconds=max(0.0, seconds)),
            attempts=job.attempts if attempts is None else attempts,
        )
        await self.store.update_job(job, changes, now=now)

    async def _past_deadline(self, job: Job) -> bool:
        now = self.clock.now()
        if now < job.deadline_at:
            return False
        await transition(
            self.store,
            job,
            Event.DEADLINE,
            cause="deadline",
            now=now,
            changes=Changes(
                failure=Failure(FailureReason.DEADLINE, "no result before the job's deadline")
            ),
        )
        return True

    async def _bind_waiting(self, job_id: str) -> None:
        """Callbacks that came while the job was being submitted waited for the
        answer. Once the job has left ``submitting`` (accepted, uncertain, settled),
        apply them: an early callback settles a job left uncertain, too."""
        job = await self.store.get_job(job_id)
        if job is None or awaits_submit_answer(job.state):
            return
        for delivery in await self.store.deliveries_waiting_for(
            job.id, job.provider, job.provider_job_id
        ):
            await self.process_delivery(delivery)

    async def _interrupted(self, job: Job) -> None:
        """A submit call was cut off (a restart, a crash, a lease run out)."""
        await self._uncertain(
            job,
            "the submit call was cut off; the provider may have the job and bill it",
            cause="recovery",
        )
        await self._bind_waiting(job.id)

    async def _uncertain(self, job: Job, message: str, *, cause: str) -> None:
        """The provider may have the job (and bill it): never submitted again."""
        await transition(
            self.store,
            job,
            Event.SUBMIT_UNCERTAIN,
            cause=cause,
            now=self.clock.now(),
            changes=Changes(failure=Failure(FailureReason.SUBMISSION_UNCERTAIN, message)),
        )

    async def _submit(self, job: Job) -> None:
        if await self._past_deadline(job):
            return
        provider = self.providers[job.provider]
        now = self.clock.now()
        wait = await self.budgets.try_acquire(job.provider, "submit", now)
        if wait > 0:
            await self._reschedule(job, wait)
            return
        until = now + timedelta(seconds=self.config.submit_hold_s(job.provider))
        started = await transition(
            self.store,
            job,
            Event.SUBMIT_STARTED,
            cause="submit",
            now=now,
            changes=Changes(next_check_at=until, lease_until=until),
        )
        if not started.changed:
            return
        job = started.job
        request = SubmitRequest(
            job_id=job.id,
            scale=job.scale,
            options=job.options,
            image_url=self.input_url(job),
            image_bytes=None,
            callback_url=(
                self.callback_url(job.provider, job) if provider.callback_mode == "job" else None
            ),
        )
        if not provider.needs_image_url and job.input_key is not None:
            request = SubmitRequest(
                job_id=job.id,
                scale=job.scale,
                options=job.options,
                image_url=None,
                image_bytes=await self.inputs.read(job.input_key),
                callback_url=request.callback_url,
            )
        try:
            accepted = await self._provider_call(job, "submit", provider.submit(request))
        except ProviderThrottled as exc:
            await self.budgets.cool_down(
                job.provider, "submit", self.clock.now(), exc.retry_after_s
            )
            await self._deferred(job, exc.retry_after_s, exc)
            return
        except ProviderUncertain as exc:
            await self._uncertain(job, exc.message, cause="submit")
            return
        except ProviderRejected as exc:
            await transition(
                self.store,
                job,
                Event.SUBMIT_REJECTED,
                cause="submit",
                now=self.clock.now(),
                changes=Changes(failure=Failure(exc.reason, exc.message)),
            )
            return
        except ProviderError as exc:
            delay = self.config.poll.delay_s(job.attempts + 1, self.rng)
            await self._deferred(job, max(1.0, delay), exc)
            return
        if accepted.update is not None:
            await self._settle_sync(job, accepted)
            return
        now = self.clock.now()
        accepted_changes = Changes(
            provider_job_id=accepted.provider_job_id,
            cost=accepted.cost,
            attempts=0,
            next_check_at=now + timedelta(seconds=self.config.poll.delay_s(0, self.rng)),
        )
        try:
            await self._recorded(
                job,
                accepted,
                lambda: transition(
                    self.store,
                    job,
                    Event.SUBMIT_ACCEPTED,
                    cause="submit",
                    now=now,
                    changes=accepted_changes,
                ),
            )
        except ProviderJobIdTaken as exc:
            # The provider took the job (and may bill it), but named it with an id
            # another job holds: neither its callbacks nor its polls can be told
            # apart. Say so now instead of leaving the job in ``submitting``.
            await self._uncertain(job, exc.message, cause="submit")

    async def _settle_sync(self, job: Job, accepted: Accepted) -> None:
        """A synchronous provider answered with the outcome itself."""
        update = accepted.update
        assert update is not None
        result: ResultInfo | None = None
        failure: Failure | None = None
        if update.status is UpdateStatus.SUCCEEDED and update.result_bytes is not None:
            # Inline image data: store it before leaving ``submitting``, so a crash
            # cannot lose a result that was paid for.
            try:
                result = await self.fetcher.store_bytes(update.result_bytes, job.id)
            except FetchError as exc:
                failure = Failure(exc.reason, exc.message)
        try:
            await self._record_answer(job, accepted, result, failure)
        except ProviderJobIdTaken:
            # The answer is this call's outcome, paid for, whatever id the provider
            # gave it: keep it under that id qualified by ours.
            own = f"{accepted.provider_job_id}~{job.id}"
            log.warning(
                "submit.id_taken",
                extra={"job_id": job.id, "provider": job.provider, "action": "id_taken"},
            )
            await self._record_answer(job, replace(accepted, provider_job_id=own), result, failure)

    async def _record_answer(
        self,
        job: Job,
        accepted: Accepted,
        result: ResultInfo | None,
        failure: Failure | None,
    ) -> None:
        update = accepted.update
        assert update is not None
        if update.status is not UpdateStatus.SUCCEEDED or update.result_bytes is None:
            # A URL to fetch, or a failure: the same path as any other signal.
            now = self.clock.now()
            await self._recorded(
                job,
                accepted,
                lambda: apply_update(
                    self.store,
                    job,
                    replace(update, provider_job_id=accepted.provider_job_id),
                    cause="submit",
                    now=now,
                ),
            )
            return
        now = self.clock.now()
        # The stored result goes with the job into ``fetching``, due at once: if
        # the process dies before the next step, whoever looks next finishes it.
        changes = Changes(
            provider_job_id=accepted.provider_job_id,
            cost=accepted.cost if accepted.cost is not None else update.cost,
            next_check_at=now,
        )
        if result is not None:
            changes = replace(changes, result=result)
        got = await self._recorded(
            job,
            accepted,
            lambda: transition(
                self.store, job, Event.PROVIDER_SUCCEEDED, cause="submit", now=now, changes=changes
            ),
        )
        if not got.changed:
            return
        if result is not None:
            await transition(
                self.store,
                got.job,
                Event.RESULT_STORED,
                cause="submit",
                now=now,
                changes=Changes(
                    result=result, detail={"bytes": result.bytes, "sha256": result.sha256}
                ),
            )
        else:
            assert failure is not None
            await self._result_failed(got.job, failure)

    async def operator_poll(self, job: Job, *, call: str = "reconcile") -> ProviderUpdate:
        """One status call an operator asked for: it waits for the provider's status
        budget like the scheduler's polls, is counted and logged like them, and a
        429 cools the budget down for everyone."""
        assert job.provider_job_id is not None
        provider = self.providers[job.provider]
        for _ in range(10_000):
            wait = await self.budgets.try_acquire(job.provider, "status", self.clock.now())
            if wait <= 0:
                break
            await asyncio.sleep(wait)  # the budget's own answer: when a call is free
        else:
            raise ProviderThrottled("the status budget stayed spent", retry_after_s=60.0)
        try:
            return await self._provider_call(job, call, provider.poll(job.provider_job_id))
        except ProviderThrottled as exc:
            await self.budgets.cool_down(
                job.provider, "status", self.clock.now(), exc.retry_after_s
            )
            raise

    async def _recorded(
        self, job: Job, accepted: Accepted, write: Callable[[], Awaitable[Applied]]
    ) -> Applied:
        """Record what a provider answered to a submit, retrying while the store cannot
        take it: the answer cannot be asked for again. If it still fails, the provider's
        job id is logged, so an operator can follow the job the provider has."""

        def retrying(exc: StoreUnavailable, attempt: int) -> None:
            log.warning(
                "submit.record_retry",
                extra={
                    "job_id": job.id,
                    "provider": job.provider,
                    "action": "record_retry",
                    "attempt": attempt,
                    "error": exc.message,
                },
            )

        try:
            return await until_stored(write, waits_s=self.config.store_retry_s, on_retry=retrying)
        except StoreUnavailable as exc:
            log.error(
                "submit.unrecorded",
                extra={
                    "job_id": job.id,
                    "provider": job.provider,
                    "action": "unrecorded",
                    "provider_job_id": accepted.provider_job_id,
                    "error": exc.message,
                },
            )
            raise

    async def _provider_call(self, job: Job, call: str, request: Awaitable[T]) -> T:
        """Await one provider call, counted and logged (never with its URL or key)."""
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await request
        except ProviderError as exc:
            outcome = exc.code
            raise
        finally:
            self.metrics.provider_calls.labels(job.provider, call, outcome).inc()
            log.info(
                "provider.call",
                extra={
                    "job_id": job.id,
                    "provider": job.provider,
                    "action": call,
                    "outcome": outcome,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )

    async def _deferred(self, job: Job, seconds: float, exc: ProviderError) -> None:
        now = self.clock.now()
        log.info(
            "provider.deferred",
            extra={
                "job_id": job.id,
                "provider": job.provider,
                "action": "submit_deferred",
                "error": exc.code,
                "retry_in_s": round(seconds, 3),
            },
        )
        await transition(
            self.store,
            job,
            Event.SUBMIT_DEFERRED,
            cause="submit",
            now=now,
            changes=Changes(
                next_check_at=now + timedelta(seconds=seconds), attempts=job.attempts + 1
            ),
        )

    async def _poll(self, job: Job) -> None:
        if await self._past_deadline(job):
            return
        provider = self.providers[job.provider]
        if job.provider_job_id is None:
            return
        now = self.clock.now()
        if (now - job.created_at).total_seconds() > self.config.stuck_after_s:
            log.warning(
                "job.stuck",
                extra={
                    "job_id": job.id,
                    "provider": job.provider,
                    "action": "stuck",
                    "age_s": round((now - job.created_at).total_seconds()),
                },
            )
        wait = await self.budgets.try_acquire(job.provider, "status", now)
        if wait > 0:
            await self._reschedule(job, wait)
            return
        try:
            update = await self._provider_call(job, "poll", provider.poll(job.provider_job_id))
        except ProviderThrottled as exc:
            await self.budgets.cool_down(
                job.provider, "status", self.clock.now(), exc.retry_after_s
            )
            await self._reschedule(job, exc.retry_after_s)
            return
        except ProviderRejected as exc:
            await transition(
                self.store,
                job,
                Event.PROVIDER_FAILED,
                cause="poll",
                now=self.clock.now(),
                changes=Changes(failure=Failure(exc.reason, exc.message)),
            )
            return
        except ProviderError:
            attempts = job.attempts + 1
            await self._reschedule(
                job, self.config.poll.delay_s(attempts, self.rng), attempts=attempts
            )
            return
        applied = await apply_update(self.store, job, update, cause="poll", now=self.clock.now())
        if not applied.changed and applied.job.state is JobState.SUBMITTED:
            attempts = applied.job.attempts + 1
            await self._reschedule(
                applied.job, self.config.poll.delay_s(attempts, self.rng), attempts=attempts
            )

    async def _fetch(self, job: Job) -> None:
        if job.result is not None:
            # Inline data already stored (a kill cut the job off after that): record it.
            await transition(
                self.store,
                job,
                Event.RESULT_STORED,
                cause="fetch",
                now=self.clock.now(),
                changes=Changes(detail={"bytes": job.result.bytes, "sha256": job.result.sha256}),
            )
            return
        if await self._past_deadline(job):
            return
        if not job.result_url:
            await self._result_failed(
                job, Failure(FailureReason.RESULT_INVALID, "the provider gave no result URL")
            )
            return
        try:
            result = await self.fetcher.fetch(job.result_url, job.id)
        except FetchError as exc:
            await self._fetch_failed(job, exc)
            return
        await transition(
            self.store,
            job,
            Event.RESULT_STORED,
            cause="fetch",
            now=self.clock.now(),
            changes=Changes(
                result=result,
                detail={
                    "bytes": result.bytes,
                    "sha256": result.sha256,
                    "width": result.width,
                    "height": result.height,
                },
            ),
        )

    async def _fetch_failed(self, job: Job, exc: FetchError) -> None:
        now = self.clock.now()
        log.info(
            "result.fetch_failed",
            extra={
                "job_id": job.id,
                "provider": job.provider,
                "action": exc.code,
                "error": exc.message,
            },
        )
        if exc.retryable:
            attempts = job.attempts + 1
            await self._reschedule(
                job, self.config.poll.delay_s(attempts, self.rng), attempts=attempts
            )
            return
        # A synchronous provider has no status endpoint to ask for a fresh URL.
        can_refresh = self.providers[job.provider].callback_mode != "none"
        if exc.reason == FailureReason.RESULT_EXPIRED and job.refetches < 1 and can_refresh:
            # One re-poll for a fresh URL before giving up.
            await transition(
                self.store,
                job,
                Event.RESULT_REFRESH,
                cause="fetch",
                now=now,
                changes=Changes(refetches=job.refetches + 1, next_check_at=now, result_url=None),
            )
            return
        await self._result_failed(job, Failure(exc.reason, exc.message))

    async def _result_failed(self, job: Job, failure: Failure) -> None:
        await transition(
            self.store,
            job,
            Event.RESULT_FAILED,
            cause="fetch",
            now=self.clock.now(),
            changes=Changes(failure=failure),
        )
