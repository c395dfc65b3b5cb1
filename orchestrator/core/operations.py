"""Operator work: replay and inject callbacks, reconcile with providers, stuck jobs, retry.

Each verb goes through the same parse, match and apply path as live traffic,
and says what it did (or, for a dry run, what it would do).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from orchestrator.core import failover
from orchestrator.core.applying import apply_update
from orchestrator.core.engine import Orchestrator
from orchestrator.domain.states import next_state, provider_event
from orchestrator.security.signing import CallbackClaims
from orchestrator.store.protocol import Delivery, DeliveryStatus
from schemas.errors import NotFound, ProviderError, RejectedInput
from schemas.jobs import Job, JobState, UpdateStatus


@dataclass(frozen=True, slots=True)
class ReplayResult:
    delivery_id: str
    before: DeliveryStatus
    after: DeliveryStatus
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "before": self.before.value,
            "after": self.after.value,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    job_id: str
    before: JobState
    after: JobState | None  # None: no change
    applied: bool
    note: str

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "before": self.before.value,
            "after": self.after.value if self.after else None,
            "applied": self.applied,
            "note": self.note,
        }


async def replay(orchestrator: Orchestrator, delivery_id: str) -> ReplayResult:
    """Run a stored delivery through parse, match and apply again."""
    store = orchestrator.store
    delivery = await store.get_delivery(delivery_id)
    if delivery is None:
        raise NotFound("no such delivery")
    if delivery.status is DeliveryStatus.PENDING:
        # It may be acknowledged and not filed yet (its id is in the callback's answer).
        # File it first: applied where it is not filed, its mark would go nowhere, and
        # the inbox pass would apply it a second time.
        await orchestrator.inbox.file_received()
        delivery = await store.get_delivery(delivery_id)
        if delivery is None:
            raise NotFound("no such delivery")
    if delivery.status is DeliveryStatus.APPLIED:
        return ReplayResult(
            delivery.id,
            delivery.status,
            delivery.status,
            "already applied: replaying it would change nothing",
        )
    await store.requeue_delivery(delivery.id)
    fresh = await store.get_delivery(delivery.id)
    if fresh is None:  # deleted meanwhile (pruned, or by another operator)
        raise NotFound("no such delivery")
    after = await orchestrator.process_delivery(fresh, cause=f"replay:{delivery.id}")
    return ReplayResult(delivery.id, delivery.status, after, f"replayed: now {after.value}")


async def replay_many(
    orchestrator: Orchestrator,
    *,
    status: DeliveryStatus,
    since: datetime | None,
    provider: str | None = None,
    limit: int = 1000,
) -> list[ReplayResult]:
    found = await orchestrator.store.list_deliveries(
        status=status, since=since, provider=provider, limit=limit
    )
    return [await replay(orchestrator, d.id) for d in reversed(found)]


async def inject(
    orchestrator: Orchestrator, provider: str, body: bytes, *, job_id: str | None = None
) -> tuple[Delivery, DeliveryStatus]:
    """Take a callback captured elsewhere through the same checks as a live one
    (all but the URL token), stored in the inbox and marked as injected."""
    if provider not in orchestrator.providers:
        raise RejectedInput(f"unknown provider {provider!r}")
    if job_id is not None and await orchestrator.store.get_job(job_id) is None:
        raise NotFound("no such job")
    delivery = await orchestrator.receive(
        CallbackClaims(provider, job_id), {"x-injected": "operator"}, body, source="injected"
    )
    if delivery.status is DeliveryStatus.DUPLICATE:
        return delivery, DeliveryStatus.DUPLICATE
    status = await orchestrator.process_delivery(delivery, cause=f"inject:{delivery.id}")
    return delivery, status


async def reconcile(
    orchestrator: Orchestrator, job: Job, *, dry_run: bool = False
) -> ReconcileResult:
    """Ask the provider's status endpoint and apply the answer (or say what it would do).
    The call waits for the provider's status budget, as the scheduler's polls do."""
    if job.state.terminal:
        return ReconcileResult(job.id, job.state, None, False, "final state: nothing to ask")
    if job.provider_job_id is None:
        return ReconcileResult(
            job.id,
            job.state,
            None,
            False,
            "the provider never gave a job id: nothing to ask it about",
        )
    try:
        update = await orchestrator.operator_poll(job)
    except ProviderError as exc:
        return ReconcileResult(job.id, job.state, None, False, f"provider: {exc.message}")
    if update.status is UpdateStatus.RUNNING:
        return ReconcileResult(job.id, job.state, None, False, "still running at the provider")
    target = next_state(job.state, provider_event(update.status))
    if target is None:
        note = f"the provider says {update.status.value}; {job.state.value} does not change"
        return ReconcileResult(job.id, job.state, None, False, note)
    note = f"the provider says {update.status.value}"
    if update.failure is not None:
        note += f" ({update.failure.reason}: {update.failure.message})"
    if dry_run:
        return ReconcileResult(job.id, job.state, target, False, note)
    applied = await apply_update(
        orchestrator.store,
        job,
        update,
        cause="reconcile",
        now=orchestrator.clock.now(),
        router=orchestrator.parts.router,
    )
    orchestrator.wake()
    after = applied.job.state if applied.changed else None
    return ReconcileResult(job.id, job.state, after, applied.changed, note)


@dataclass
class ReconcileRun:
    """Jobs being reconciled in the background, one at a time within the budget;
    ``results`` yields each job's result as it comes."""

    job_ids: list[str]
    dry_run: bool
    _results: asyncio.Queue[ReconcileResult | None] = field(default_factory=asyncio.Queue)

    async def results(self) -> AsyncIterator[ReconcileResult]:
        while (result := await self._results.get()) is not None:
            yield result


def start_reconcile(
    orchestrator: Orchestrator,
    jobs: list[Job],
    *,
    dry_run: bool,
    spawn: Callable[[Coroutine[Any, Any, None]], object],
) -> ReconcileRun:
    """Queue jobs for reconcile and return at once; ``spawn`` runs the work on a
    task that outlives the request that asked for it."""
    run = ReconcileRun([j.id for j in jobs], dry_run)

    async def work() -> None:
        try:
            for job in jobs:
                fresh = await orchestrator.store.get_job(job.id) or job
                run._results.put_nowait(await reconcile(orchestrator, fresh, dry_run=dry_run))
        finally:
            run._results.put_nowait(None)

    spawn(work())
    return run


async def stuck_jobs(
    orchestrator: Orchestrator, *, older_than_s: float, limit: int = 1000
) -> list[Job]:
    """Submitted jobs older than their expected duration with no final answer yet."""
    before = orchestrator.clock.now() - timedelta(seconds=older_than_s)
    return await orchestrator.store.list_jobs(
        state=JobState.SUBMITTED, created_before=before, limit=limit
    )


async def retry(orchestrator: Orchestrator, job: Job, *, confirm_uncertain: bool) -> Job:
    """A new job from a failed or uncertain one, linked to it. A confirmed uncertain
    job with a route goes on at its next provider instead, under the same id."""
    if job.state not in (JobState.FAILED, JobState.UNCERTAIN):
        raise RejectedInput(f"only failed or uncertain jobs are retried; this one is {job.state}")
    if job.state is JobState.UNCERTAIN and not confirm_uncertain:
        raise RejectedInput(
            "this job is uncertain: the provider may still have it and bill it; "
            "confirm to submit it again"
        )
    if job.state is JobState.UNCERTAIN:
        moved = await failover.confirm_uncertain(orchestrator.parts, job)
        if moved is not None:
            return moved
    return await orchestrator.intake.create_retry(job)
