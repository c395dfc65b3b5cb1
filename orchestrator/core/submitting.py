"""Submitting a queued job to its provider, and recording the answer.

``submitting`` is written before the call: a call cut off leaves the job
``uncertain``, never submitted twice. The answer is recorded with retries while
the store refuses it, since it cannot be asked for again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta

from orchestrator.core.applying import Applied, apply_update, transition
from orchestrator.core.calls import provider_call
from orchestrator.core.failover import may_go, moved_on
from orchestrator.core.moves import past_deadline, reschedule, result_failed, uncertain
from orchestrator.core.parts import Parts, expected_size, log
from orchestrator.core.store_retry import until_stored
from orchestrator.core.urls import Urls
from orchestrator.domain.states import Event
from orchestrator.providers.base import Accepted, SubmitRequest
from orchestrator.store.protocol import Changes
from schemas.errors import (
    FetchError,
    ProviderError,
    ProviderJobIdTaken,
    ProviderRejected,
    ProviderThrottled,
    ProviderUncertain,
    StoreUnavailable,
)
from schemas.jobs import (
    Failure,
    FailureReason,
    Job,
    Operation,
    ProviderUpdate,
    ResultInfo,
    UpdateStatus,
)

# Refusals that are about this input at this provider, not the provider's health.
_INPUT_REASONS = frozenset({FailureReason.REJECTED_INPUT, FailureReason.NSFW})


class Submitter:
    def __init__(self, parts: Parts, urls: Urls) -> None:
        self.parts = parts
        self.urls = urls

    async def submit(self, job: Job) -> None:
        parts = self.parts
        if await past_deadline(parts, job):
            return
        if not await may_go(parts, job):
            return
        provider = parts.providers[job.provider]
        now = parts.clock.now()
        wait = await parts.budgets.try_acquire(job.provider, "submit", now)
        if wait > 0:
            await reschedule(parts, job, wait)
            return
        until = now + timedelta(seconds=parts.config.submit_hold_s(job.provider))
        started = await transition(
            parts.store,
            job,
            Event.SUBMIT_STARTED,
            cause="submit",
            now=now,
            changes=Changes(next_check_at=until, lease_until=until),
        )
        if not started.changed:
            return
        job = started.job
        request = await self._request(job)
        try:
            accepted = await provider_call(parts.metrics, job, "submit", provider.submit(request))
        except ProviderThrottled as exc:
            await parts.budgets.cool_down(
                job.provider, "submit", parts.clock.now(), exc.retry_after_s
            )
            await parts.router.provider_failed(job.provider)
            if not await moved_on(parts, job, exc, exc.retry_after_s):
                await self._deferred(job, exc.retry_after_s, exc)
            return
        except ProviderUncertain as exc:
            # It may still be working (and billing): never moved on by itself.
            await parts.router.provider_failed(job.provider)
            await uncertain(parts, job, exc.message, cause="submit")
            return
        except ProviderRejected as exc:
            if exc.reason not in _INPUT_REASONS:
                await parts.router.provider_failed(job.provider)  # auth, credit, quota
            await transition(
                parts.store,
                job,
                Event.SUBMIT_REJECTED,
                cause="submit",
                now=parts.clock.now(),
                changes=Changes(failure=Failure(exc.reason, exc.message)),
                router=parts.router,
            )
            return
        except ProviderError as exc:
            await parts.router.provider_failed(job.provider)
            delay = max(1.0, parts.config.poll.delay_s(job.attempts + 1, parts.rng))
            if not await moved_on(parts, job, exc, delay):
                await self._deferred(job, delay, exc)
            return
        if accepted.update is not None:
            await self._settle_sync(job, accepted, accepted.update)
            await parts.router.provider_answered(job.provider)
            return
        now = parts.clock.now()
        accepted_changes = Changes(
            provider_job_id=accepted.provider_job_id,
            cost=accepted.cost,
            attempts=0,
            next_check_at=now + timedelta(seconds=parts.config.poll.delay_s(0, parts.rng)),
        )
        try:
            await self._recorded(
                job,
                accepted,
                lambda: transition(
                    parts.store,
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
            await uncertain(parts, job, exc.message, cause="submit")
        # Only once the answer is recorded: it cannot be asked for again.
        await parts.router.provider_answered(job.provider)

    async def _request(self, job: Job) -> SubmitRequest:
        """What the provider is asked: the input (and a replace job's mask) as signed
        URLs; for a provider that takes data inline, the uploaded bytes too (an
        upscale keeps to one of the two, as it always has)."""
        parts = self.parts
        provider = parts.providers[job.provider]
        inline = not provider.needs_image_url
        replacing = job.operation is Operation.REPLACE
        image_bytes = None
        if inline and job.input_key is not None:
            image_bytes = await parts.inputs.read(job.input_key)
        return SubmitRequest(
            job_id=job.id,
            scale=job.scale,
            options=job.options,
            image_url=(self.urls.input_url(job) if replacing or image_bytes is None else None),
            image_bytes=image_bytes,
            callback_url=(
                self.urls.callback_url(job.provider, job)
                if provider.callback_mode == "job"
                else None
            ),
            operation=job.operation,
            prompt=job.prompt,
            mask_url=self.urls.mask_url(job) if replacing else None,
            mask_bytes=(
                await parts.inputs.read(job.mask_key)
                if replacing and inline and job.mask_key is not None
                else None
            ),
        )

    async def _settle_sync(self, job: Job, accepted: Accepted, update: ProviderUpdate) -> None:
        """A synchronous provider answered with the outcome itself (``update``)."""
        stored: ResultInfo | Failure | None = None
        if update.status is UpdateStatus.SUCCEEDED and update.result_bytes is not None:
            # Inline image data: store it before leaving ``submitting``, so a crash
            # cannot lose a result that was paid for.
            try:
                stored = await self.parts.fetcher.store_bytes(
                    update.result_bytes, job.id, size=expected_size(job)
                )
            except FetchError as exc:
                stored = Failure(exc.reason, exc.message)
        try:
            await self._record_answer(job, accepted, update, stored)
        except ProviderJobIdTaken:
            # The answer is this call's outcome, paid for, whatever id the provider
            # gave it: keep it under that id qualified by ours.
            own = f"{accepted.provider_job_id}~{job.id}"
            log.warning(
                "submit.id_taken",
                extra={"job_id": job.id, "provider": job.provider, "action": "id_taken"},
            )
            await self._record_answer(job, replace(accepted, provider_job_id=own), update, stored)

    async def _record_answer(
        self,
        job: Job,
        accepted: Accepted,
        update: ProviderUpdate,
        stored: ResultInfo | Failure | None,
    ) -> None:
        """Record a synchronous answer. ``stored`` is what became of its inline image
        data: kept (a ``ResultInfo``), refused (a ``Failure``), or None without any."""
        parts = self.parts
        if stored is None:
            # A URL to fetch, or a failure: the same path as any other signal.
            now = parts.clock.now()
            await self._recorded(
                job,
                accepted,
                lambda: apply_update(
                    parts.store,
                    job,
                    replace(update, provider_job_id=accepted.provider_job_id),
                    cause="submit",
                    now=now,
                    router=parts.router,
                ),
            )
            return
        now = parts.clock.now()
        # The stored result goes with the job into ``fetching``, due at once: if
        # the process dies before the next step, whoever looks next finishes it.
        changes = Changes(
            provider_job_id=accepted.provider_job_id,
            cost=accepted.cost if accepted.cost is not None else update.cost,
            next_check_at=now,
        )
        if isinstance(stored, ResultInfo):
            changes = replace(changes, result=stored)
        got = await self._recorded(
            job,
            accepted,
            lambda: transition(
                parts.store, job, Event.PROVIDER_SUCCEEDED, cause="submit", now=now, changes=changes
            ),
        )
        if not got.changed:
            return
        if isinstance(stored, ResultInfo):
            await transition(
                parts.store,
                got.job,
                Event.RESULT_STORED,
                cause="submit",
                now=now,
                changes=Changes(
                    result=stored, detail={"bytes": stored.bytes, "sha256": stored.sha256}
                ),
            )
        else:
            await result_failed(parts, got.job, stored)

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
            return await until_stored(
                write, waits_s=self.parts.config.store_retry_s, on_retry=retrying
            )
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

    async def _deferred(self, job: Job, seconds: float, exc: ProviderError) -> None:
        """The provider did not take the job (throttled, or a transient error): the
        job is queued again, due in ``seconds``."""
        now = self.parts.clock.now()
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
            self.parts.store,
            job,
            Event.SUBMIT_DEFERRED,
            cause="submit",
            now=now,
            changes=Changes(
                next_check_at=now + timedelta(seconds=seconds), attempts=job.attempts + 1
            ),
        )
