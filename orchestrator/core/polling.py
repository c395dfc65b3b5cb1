"""Polling a submitted job's provider for its status: the fallback when no
callback comes, and the check an operator asks for (reconcile)."""

from __future__ import annotations

import asyncio

from orchestrator.core.applying import apply_update, transition
from orchestrator.core.calls import provider_call
from orchestrator.core.moves import back_off, past_deadline, reschedule
from orchestrator.core.parts import Parts, log
from orchestrator.domain.states import Event
from orchestrator.store.protocol import Changes
from schemas.errors import ProviderError, ProviderRejected, ProviderThrottled, RejectedInput
from schemas.jobs import Failure, Job, JobState, ProviderUpdate


class Poller:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    async def poll(self, job: Job) -> None:
        parts = self.parts
        if await past_deadline(parts, job):
            return
        provider = parts.providers[job.provider]
        if job.provider_job_id is None:
            return
        now = parts.clock.now()
        if (now - job.created_at).total_seconds() > parts.config.stuck_after_s:
            log.warning(
                "job.stuck",
                extra={
                    "job_id": job.id,
                    "provider": job.provider,
                    "action": "stuck",
                    "age_s": round((now - job.created_at).total_seconds()),
                },
            )
        wait = await parts.budgets.try_acquire(job.provider, "status", now)
        if wait > 0:
            await reschedule(parts, job, wait)
            return
        try:
            update = await provider_call(
                parts.metrics, job, "poll", provider.poll(job.provider_job_id)
            )
        except ProviderThrottled as exc:
            await parts.budgets.cool_down(
                job.provider, "status", parts.clock.now(), exc.retry_after_s
            )
            await reschedule(parts, job, exc.retry_after_s)
            return
        except ProviderRejected as exc:
            await transition(
                parts.store,
                job,
                Event.PROVIDER_FAILED,
                cause="poll",
                now=parts.clock.now(),
                changes=Changes(failure=Failure(exc.reason, exc.message)),
                router=parts.router,
            )
            return
        except ProviderError:
            await back_off(parts, job)
            return
        applied = await apply_update(
            parts.store, job, update, cause="poll", now=parts.clock.now(), router=parts.router
        )
        if not applied.changed and applied.job.state is JobState.SUBMITTED:
            await back_off(parts, applied.job)

    async def operator_poll(self, job: Job, *, call: str = "reconcile") -> ProviderUpdate:
        """One status call an operator asked for: it waits for the provider's status
        budget like the scheduler's polls, is counted and logged like them, and a
        429 cools the budget down for everyone."""
        parts = self.parts
        provider_job_id = job.provider_job_id
        if provider_job_id is None:
            raise RejectedInput("the provider never gave this job an id: nothing to ask it about")
        provider = parts.providers[job.provider]
        for _ in range(10_000):
            wait = await parts.budgets.try_acquire(job.provider, "status", parts.clock.now())
            if wait <= 0:
                break
            await asyncio.sleep(wait)  # the budget's own answer: when a call is free
        else:
            raise ProviderThrottled("the status budget stayed spent", retry_after_s=60.0)
        try:
            return await provider_call(parts.metrics, job, call, provider.poll(provider_job_id))
        except ProviderThrottled as exc:
            await parts.budgets.cool_down(
                job.provider, "status", parts.clock.now(), exc.retry_after_s
            )
            raise
