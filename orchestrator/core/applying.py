"""One way in for every provider signal: apply a ProviderUpdate to its job."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from orchestrator.domain.states import Event, next_state, provider_event
from orchestrator.store.protocol import Changes, DeliveryMark, Store
from schemas.jobs import Failure, FailureReason, Job, JobState, ProviderUpdate, UpdateStatus

log = logging.getLogger(__name__)

_MAX_RACES = 8


@dataclass(frozen=True, slots=True)
class Applied:
    job: Job
    changed: bool


def update_changes(job: Job, update: ProviderUpdate, now: datetime) -> Changes:
    """The columns a provider update sets besides the state (pure)."""
    pjid = job.provider_job_id or update.provider_job_id
    if update.status is UpdateStatus.SUCCEEDED:
        return Changes(
            provider_job_id=pjid,
            result_url=update.result_url,
            cost=update.cost if update.cost is not None else job.cost,
            next_check_at=now,
            attempts=0,
            detail={"result_host": _host(update.result_url)},
        )
    failure = update.failure or Failure(FailureReason.PROVIDER_FAILED, "provider reported failure")
    return Changes(
        provider_job_id=pjid,
        failure=failure,
        cost=update.cost if update.cost is not None else job.cost,
        detail={"reason": failure.reason},
    )


def _host(url: str | None) -> str | None:
    if not url:
        return None
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[0].rsplit("@", 1)[-1]


async def transition(
    store: Store,
    job: Job,
    event: Event,
    *,
    cause: str,
    now: datetime,
    changes: Changes | None = None,
    mark: DeliveryMark | None = None,
) -> Applied:
    """Apply ``event`` with compare-and-set, re-reading the job when another writer won.

    Illegal events (a late callback for a terminal job, a second success) are
    no-ops: the job is returned unchanged. ``mark`` (the outcome of the delivery
    that brought the event) is written in the transition's transaction, so only
    when ``changed``; otherwise marking it is the caller's.
    """
    current = job
    for _ in range(_MAX_RACES):
        target = next_state(current.state, event)
        if target is None:
            return Applied(current, False)
        done = await store.apply_transition(
            current, event, target, cause=cause, changes=changes, now=now, mark=mark
        )
        if done is not None:
            log.info(
                "job.transition",
                extra={
                    "job_id": done.id,
                    "provider": done.provider,
                    "action": event.value,
                    "from_state": current.state.value,
                    "to_state": target.value,
                    "cause": cause,
                },
            )
            return Applied(done, True)
        fresh = await store.get_job(current.id)
        if fresh is None:
            return Applied(current, False)
        current = fresh
    return Applied(current, False)


async def apply_update(
    store: Store,
    job: Job,
    update: ProviderUpdate,
    *,
    cause: str,
    now: datetime,
    mark: DeliveryMark | None = None,
) -> Applied:
    """Apply a provider signal. Whatever order signals come in, duplicates included,
    the job ends in the same state. ``mark`` as for :func:`transition`."""
    event = provider_event(update.status)
    if event is Event.PROVIDER_RUNNING:
        # Progress changes nothing we store; polling goes on at its own pace.
        return Applied(job, False)
    if job.state is JobState.CANCELLED and update.status is UpdateStatus.SUCCEEDED:
        log.info(
            "job.late_result",
            extra={"job_id": job.id, "provider": job.provider, "action": "ignored"},
        )
    return await transition(
        store,
        job,
        event,
        cause=cause,
        now=now,
        changes=update_changes(job, update, now),
        mark=mark,
    )
