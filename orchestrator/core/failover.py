"""Moving a routed job on: before its submit (the provider is cooling down or over
its spend limits), after a submit the provider did not take, and when an
operator confirms that an uncertain attempt is dead.

Every move is the ``fail_over`` transition: one compare-and-set with the job's
version, whose columns (``routing.move_changes``) close the current attempt and
open the next one at the provider the move-on table chose.
"""

from __future__ import annotations

from datetime import timedelta

from orchestrator.core.applying import Applied, transition
from orchestrator.core.moves import reschedule
from orchestrator.core.parts import Parts
from orchestrator.core.routing import move_changes
from orchestrator.domain.failover import MoveOn, Outcome
from orchestrator.domain.states import Event
from orchestrator.store.protocol import Changes
from schemas.errors import ProviderError, RejectedInput
from schemas.jobs import Failure, FailureReason, Job, JobState

PROVIDER_COOLING = "provider_cooling"
OPERATOR_CONFIRMED = "operator_confirmed"


async def may_go(parts: Parts, job: Job) -> bool:
    """Whether the queued job may be sent to its provider now: within the spend
    limits, and (for a routed job) not cooling down, or the provider's probe. If
    not, the job moves on along its route, fails with ``spend_limit``, or waits
    for the cool-down; nothing was sent."""
    router = parts.router
    now = parts.clock.now()
    if not await router.within_spend(job):
        decision = await router.decide(job, Outcome.OVER_SPEND)
        why = Failure(
            FailureReason.SPEND_LIMIT,
            f"{job.provider} would pass the job's max_cost or its daily spend cap",
        )
        if isinstance(decision, MoveOn):
            await skip(parts, job, decision.to, why, sent=False)
        else:
            await transition(
                parts.store,
                job,
                Event.OVER_SPEND,
                cause="submit",
                now=now,
                changes=Changes(failure=why),
            )
        return False
    if await router.admit(job):
        return True
    decision = await router.decide(job, Outcome.COOLING)
    if isinstance(decision, MoveOn):
        why = Failure(PROVIDER_COOLING, f"{job.provider} is cooling down: not sent")
        await skip(parts, job, decision.to, why, sent=False)
        return False
    # Every other provider is cooling too: wait for this one's cool-down (the job's
    # deadline still holds).
    health = (await parts.store.provider_health()).get(job.provider)
    until = health.until if health is not None and health.until is not None else now
    await reschedule(parts, job, max(1.0, (until - now).total_seconds()))
    return False


async def skip(parts: Parts, job: Job, to: str, why: Failure, *, sent: bool = True) -> Applied:
    """Move a job on to ``to``; its current attempt ends with ``why`` (``skipped``
    when nothing was ``sent``)."""
    now = parts.clock.now()
    state = "failed" if sent else "skipped"
    return await transition(
        parts.store,
        job,
        Event.FAIL_OVER,
        cause="route",
        now=now,
        changes=move_changes(job, to, why, now, state=state),
    )


async def moved_on(parts: Parts, job: Job, exc: ProviderError, wait_s: float) -> bool:
    """A submit the provider did not take (429, 5xx): whether the job moved on along
    its route (the wait would pass its deadline, the provider has had its tries, or
    it is cooling down now) instead of trying the same provider again."""
    if len(job.providers) < 2:
        return False
    now = parts.clock.now()
    fits = (
        now + timedelta(seconds=wait_s) < job.deadline_at
        and job.attempts + 1 < parts.router.submit_tries
    )
    decision = await parts.router.decide(job, Outcome.DEFERRED, retry_fits=fits)
    if not isinstance(decision, MoveOn):
        return False
    why = Failure(
        FailureReason.PROVIDER_FAILED, f"{job.provider} did not take the job: {exc.message}"
    )
    return (await skip(parts, job, decision.to, why)).changed


async def confirm_uncertain(parts: Parts, job: Job) -> Job | None:
    """An operator confirmed that the uncertain job's attempt is dead: move it on to
    the next provider of its route. None when the route has no provider left (the
    caller retries the job as a new one, as before routes)."""
    if job.state is not JobState.UNCERTAIN:
        raise RejectedInput(
            f"only an uncertain job's attempt can be confirmed; this one is {job.state}"
        )
    decision = await parts.router.decide(job, Outcome.CONFIRMED)
    if not isinstance(decision, MoveOn):
        return None
    why = Failure(
        OPERATOR_CONFIRMED,
        "an operator confirmed the uncertain attempt is dead"
        + (f" ({job.failure.message})" if job.failure else ""),
    )
    moved = await skip(parts, job, decision.to, why)
    if not moved.changed:
        raise RejectedInput("the job changed meanwhile; look at it again")
    parts.wake()
    return moved.job
