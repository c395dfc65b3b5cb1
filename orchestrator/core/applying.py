"""One way in for every provider signal: apply a ProviderUpdate to its job."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime

from orchestrator.core.routing import Router, move_changes, outcome_of
from orchestrator.domain.failover import SPEND_LIMIT, Fail, MoveOn
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
    router: Router | None = None,
) -> Applied:
    """Apply ``event`` with compare-and-set, re-reading the job when another writer won.

    Illegal events (a late callback for a terminal job, a second success) are
    no-ops: the job is returned unchanged. ``mark`` (the outcome of the delivery
    that brought the event) is written in the transition's transaction, so only
    when ``changed``; otherwise marking it is the caller's.

    With a ``router``, an event that would fail the job because its attempt ended
    dead asks the move-on table first: the job may go on at its route's next
    provider instead (``fail_over``), or fail with ``spend_limit``. A signal read
    for one attempt never applies to the next: if the job moved on meanwhile, it
    is dropped.
    """
    current = job
    for _ in range(_MAX_RACES):
        if current.attempt != job.attempt:
            return Applied(current, False)
        target = next_state(current.state, event)
        if target is None:
            return Applied(current, False)
        step_event, step_target, step_changes = event, target, changes
        if router is not None and target is JobState.FAILED:
            step_event, step_target, step_changes = await _route_end(
                router, current, event, target, changes, now
            )
        done = await store.apply_transition(
            current,
            step_event,
            step_target,
            cause=cause,
            changes=step_changes,
            now=now,
            mark=mark,
        )
        if done is not None:
            log.info(
                "job.transition",
                extra={
                    "job_id": done.id,
                    "provider": done.provider,
                    "action": step_event.value,
                    "from_state": current.state.value,
                    "to_state": step_target.value,
                    "cause": cause,
                },
            )
            return Applied(done, True)
        fresh = await store.get_job(current.id)
        if fresh is None:
            return Applied(current, False)
        current = fresh
    return Applied(current, False)


async def _route_end(
    router: Router,
    job: Job,
    event: Event,
    target: JobState,
    changes: Changes | None,
    now: datetime,
) -> tuple[Event, JobState, Changes | None]:
    """What an attempt-ending event does to a routed job: the move-on table's answer."""
    failure = (changes.items().get("failure") if changes is not None else None) or job.failure
    outcome = outcome_of(event, failure)
    if outcome is None:
        return event, target, changes
    decision = await router.decide(job, outcome)
    if isinstance(decision, MoveOn):
        return (
            Event.FAIL_OVER,
            JobState.QUEUED,
            move_changes(job, decision.to, failure, now, ended=changes),
        )
    if isinstance(decision, Fail) and decision.reason == SPEND_LIMIT and len(job.providers) > 1:
        why = Failure(
            FailureReason.SPEND_LIMIT,
            "the next provider of the route would pass the job's max_cost or a daily spend cap"
            + (f" (after {failure.reason})" if failure else ""),
        )
        return event, target, replace(changes or Changes(), failure=why)
    return event, target, changes


async def apply_update(
    store: Store,
    job: Job,
    update: ProviderUpdate,
    *,
    cause: str,
    now: datetime,
    mark: DeliveryMark | None = None,
    router: Router | None = None,
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
        router=router,
    )
