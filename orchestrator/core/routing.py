"""A routed job's next attempt: the facts of the moment for the move-on table
(``domain/failover.py``), and the columns of a move.

The move itself is a transition like any other (``applying.transition``): one
compare-and-set with the job's version, so two workers, or a late signal of the
old attempt, can never make two current attempts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from orchestrator.common.clock import Clock
from orchestrator.domain import cooldown
from orchestrator.domain.cooldown import CooldownPolicy
from orchestrator.domain.failover import Decision, Facts, Outcome, Route, Spend, decide
from orchestrator.domain.states import Event
from orchestrator.store.protocol import Changes, Store
from schemas.errors import StoreUnavailable
from schemas.jobs import Attempt, Failure, FailureReason, Job

log = logging.getLogger("orchestrator.core.engine")

# The failures that say nothing about the provider but about this input at it.
_INPUT_REASONS = frozenset({FailureReason.REJECTED_INPUT, FailureReason.NSFW})

# The events that end a job in ``failed`` because its attempt ended dead: with a
# route, the table may move it on instead.
ATTEMPT_ENDS: Mapping[Event, Outcome] = MappingProxyType(
    {
        Event.SUBMIT_REJECTED: Outcome.NOT_TAKEN,
        Event.PROVIDER_FAILED: Outcome.PROVIDER_FAILED,
        Event.RESULT_FAILED: Outcome.RESULT_FAILED,
    }
)


def outcome_of(event: Event, failure: Failure | None) -> Outcome | None:
    """What an attempt-ending event says of the attempt (None: not one)."""
    outcome = ATTEMPT_ENDS.get(event)
    if outcome is Outcome.NOT_TAKEN and failure is not None and failure.reason in _INPUT_REASONS:
        return Outcome.INPUT_REJECTED
    return outcome


@dataclass(frozen=True, slots=True)
class Router:
    store: Store
    clock: Clock
    caps: Mapping[str, float]
    policy: CooldownPolicy
    submit_tries: int = 3

    async def facts(self, job: Job, *, retry_fits: bool = True) -> Facts:
        now = self.clock.now()
        health = await self.store.provider_health()
        spend = await self.store.spend_today(now=now)
        return Facts(
            cooling=frozenset(p for p, h in health.items() if cooldown.cooling(h, now)),
            spend=Spend(
                job_spent=job.spent + (job.cost or 0.0),
                max_cost=job.max_cost,
                expected={p: s.per_job for p, s in spend.items()},
                today={p: s.credits for p, s in spend.items()},
                caps=self.caps,
            ),
            retry_fits=retry_fits,
        )

    async def decide(self, job: Job, outcome: Outcome, *, retry_fits: bool = True) -> Decision:
        route = Route(job.providers, job.route_index)
        return decide(outcome, route, await self.facts(job, retry_fits=retry_fits))

    async def within_spend(self, job: Job) -> bool:
        """Whether the job's current provider may take one more job within the limits."""
        if job.max_cost is None and job.provider not in self.caps:
            return True  # no limit applies: no reads on the submit path
        return (await self.facts(job)).spend.allows(job.provider)

    async def provider_failed(self, provider: str) -> None:
        await self._count(provider, ok=False)

    async def provider_answered(self, provider: str) -> None:
        await self._count(provider, ok=True)

    async def _count(self, provider: str, *, ok: bool) -> None:
        """Count toward the provider's health, best effort: a store that cannot take
        it now must not stand in the way of recording the job's own answer."""
        try:
            await self.store.record_provider_result(
                provider, ok=ok, now=self.clock.now(), policy=self.policy
            )
        except StoreUnavailable as exc:
            log.warning(
                "provider.health_unrecorded",
                extra={"provider": provider, "action": "health_unrecorded", "error": exc.message},
            )

    async def admit(self, job: Job) -> bool:
        """May the job go to its provider now (it is not cooling down, or the job is
        its probe)? Only routed jobs are held back by a cool-down: a job with one
        provider keeps its own backoff, as it always has."""
        if len(job.providers) < 2:
            return True
        return await self.store.admit_provider(
            job.provider, job.id, now=self.clock.now(), policy=self.policy
        )


def move_changes(
    job: Job,
    to: str,
    failure: Failure | None,
    now: datetime,
    *,
    ended: Changes | None = None,
    state: str = "failed",
) -> Changes:
    """The columns of a move to ``to``: the current attempt, as ``ended`` leaves it,
    joins the ended ones (in ``state``: ``failed``, or ``skipped`` when nothing was
    sent); the new attempt starts clean and due now."""
    values = ended.items() if ended is not None else {}
    last = Attempt(
        number=job.attempt,
        provider=job.provider,
        provider_job_id=values.get("provider_job_id", job.provider_job_id),
        state=state,
        failure=failure,
        cost=values.get("cost", job.cost),
        started_at=job.attempt_started_at or job.created_at,
        ended_at=now,
    )
    return Changes(
        provider=to,
        options=dict(job.route_options.get(to, {})),
        attempt=job.attempt + 1,
        attempt_started_at=now,
        past_attempts=(*job.past_attempts, last),
        provider_job_id=None,
        result_url=None,
        failure=None,
        result=None,
        cost=None,
        attempts=0,
        refetches=0,
        next_check_at=now,
        detail={
            "from": job.provider,
            "to": to,
            "reason": failure.reason if failure else None,
        },
    )
