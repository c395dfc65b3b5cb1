"""Moves of a job that more than one room makes: look again later, the deadline
passed, the submit is uncertain, the result failed."""

from __future__ import annotations

from datetime import timedelta

from orchestrator.core.applying import transition
from orchestrator.core.parts import Parts
from orchestrator.domain.states import Event
from orchestrator.store.protocol import Changes
from schemas.jobs import Failure, FailureReason, Job


async def reschedule(
    parts: Parts, job: Job, seconds: float, *, attempts: int | None = None
) -> None:
    """Look at the job again in ``seconds`` (its state stays)."""
    now = parts.clock.now()
    changes = Changes(
        next_check_at=now + timedelta(seconds=max(0.0, seconds)),
        attempts=job.attempts if attempts is None else attempts,
    )
    await parts.store.update_job(job, changes, now=now)


async def back_off(parts: Parts, job: Job) -> None:
    """Look again after the poll policy's next wait, one attempt further on."""
    attempts = job.attempts + 1
    await reschedule(parts, job, parts.config.poll.delay_s(attempts, parts.rng), attempts=attempts)


async def past_deadline(parts: Parts, job: Job) -> bool:
    """Whether the job's deadline passed; if so it has failed now."""
    now = parts.clock.now()
    if now < job.deadline_at:
        return False
    await transition(
        parts.store,
        job,
        Event.DEADLINE,
        cause="deadline",
        now=now,
        changes=Changes(
            failure=Failure(FailureReason.DEADLINE, "no result before the job's deadline")
        ),
    )
    return True


async def uncertain(parts: Parts, job: Job, message: str, *, cause: str) -> None:
    """The provider may have the job (and bill it): never submitted again."""
    await transition(
        parts.store,
        job,
        Event.SUBMIT_UNCERTAIN,
        cause=cause,
        now=parts.clock.now(),
        changes=Changes(failure=Failure(FailureReason.SUBMISSION_UNCERTAIN, message)),
    )


async def result_failed(parts: Parts, job: Job, failure: Failure) -> None:
    await transition(
        parts.store,
        job,
        Event.RESULT_FAILED,
        cause="fetch",
        now=parts.clock.now(),
        changes=Changes(failure=failure),
        router=parts.router,
    )
