"""The job state machine: a pure transition table.

No clock, no I/O, no logging. The store applies a transition with
compare-and-set, so of two racing signals exactly one takes effect.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from schemas.jobs import JobState, UpdateStatus

Q = JobState.QUEUED
SG = JobState.SUBMITTING
SD = JobState.SUBMITTED
F = JobState.FETCHING
OK = JobState.SUCCEEDED
X = JobState.FAILED
U = JobState.UNCERTAIN
C = JobState.CANCELLED


class Event(StrEnum):
    """What can happen to a job."""

    SUBMIT_STARTED = "submit_started"  # we are about to call the provider
    SUBMIT_DEFERRED = "submit_deferred"  # the provider did not take it (429, 5xx): try later
    SUBMIT_ACCEPTED = "submit_accepted"  # the provider gave us its job id
    SUBMIT_REJECTED = "submit_rejected"  # the provider refused the job
    SUBMIT_UNCERTAIN = "submit_uncertain"  # no answer: the job may exist and be billed
    # A progress signal: it moves no job (polling goes on at its own pace), so no
    # edge of the table takes it; ``apply_update`` drops it before any transition.
    PROVIDER_RUNNING = "provider_running"
    PROVIDER_SUCCEEDED = "provider_succeeded"  # the provider has a result for us
    PROVIDER_FAILED = "provider_failed"  # the provider gave up on the job
    RESULT_STORED = "result_stored"  # downloaded, checked and stored
    RESULT_FAILED = "result_failed"  # the result could not be fetched or is not an image
    RESULT_REFRESH = "result_refresh"  # the result URL expired: ask the provider again
    DEADLINE = "deadline"  # our own deadline passed
    CANCEL = "cancel"  # an operator or client cancelled the job
    # The current attempt is known dead and the job's route names another provider:
    # the job goes back to ``queued`` for it, under the same id (an internal move;
    # clients see ``job.attempt_failed`` and ``job.failed_over`` events).
    FAIL_OVER = "fail_over"
    # Nothing sent: the job's provider would pass its max_cost or a daily spend cap,
    # and no provider of its route is left within them.
    OVER_SPEND = "over_spend"


_NON_TERMINAL = (Q, SG, SD, F, U)

TRANSITIONS: dict[tuple[JobState, Event], JobState] = {
    (Q, Event.SUBMIT_STARTED): SG,
    (SG, Event.SUBMIT_DEFERRED): Q,
    (SG, Event.SUBMIT_ACCEPTED): SD,
    (SG, Event.SUBMIT_REJECTED): X,
    (SG, Event.SUBMIT_UNCERTAIN): U,
    # A per-job callback can also settle an uncertain job: it proves the
    # provider did create it, and says how it ended.
    (SD, Event.PROVIDER_SUCCEEDED): F,
    (U, Event.PROVIDER_SUCCEEDED): F,
    # A synchronous provider's answer is the result itself.
    (SG, Event.PROVIDER_SUCCEEDED): F,
    (SD, Event.PROVIDER_FAILED): X,
    (U, Event.PROVIDER_FAILED): X,
    (SG, Event.PROVIDER_FAILED): X,
    (F, Event.RESULT_STORED): OK,
    (F, Event.RESULT_FAILED): X,
    (F, Event.RESULT_REFRESH): SD,
    (Q, Event.DEADLINE): X,
    (Q, Event.OVER_SPEND): X,
    (SD, Event.DEADLINE): X,
    (F, Event.DEADLINE): X,
    **{(s, Event.CANCEL): C for s in _NON_TERMINAL},
    # Failover: from wherever an attempt can end dead, and from ``queued`` when the
    # provider chosen for it is cooling down before anything was sent.
    **{(s, Event.FAIL_OVER): Q for s in _NON_TERMINAL},
}


# States in which the orchestrator has work to do when the job's next check is due:
# submit a queued job, poll a submitted one, fetch a result. A job in ``submitting``
# is due when its lease ran out: its submit call was cut off.
DUE_STATES: tuple[JobState, ...] = (Q, SG, SD, F)

# States in which the job's submit answer has not been stored yet: a callback for
# such a job waits for it (it raced the answer).
SUBMIT_PENDING_STATES: tuple[JobState, ...] = (Q, SG)


def awaits_submit_answer(state: JobState) -> bool:
    """Whether a callback for a job in ``state`` must wait for its submit answer."""
    return state in SUBMIT_PENDING_STATES


# What each kind of provider signal is, as an event of the job.
PROVIDER_EVENTS: Mapping[UpdateStatus, Event] = MappingProxyType(
    {
        UpdateStatus.RUNNING: Event.PROVIDER_RUNNING,
        UpdateStatus.SUCCEEDED: Event.PROVIDER_SUCCEEDED,
        UpdateStatus.FAILED: Event.PROVIDER_FAILED,
    }
)


def next_state(current: JobState, event: Event) -> JobState | None:
    """The state ``event`` moves a job in ``current`` to, or None if it may not happen."""
    return TRANSITIONS.get((current, event))


def has_due_work(state: JobState) -> bool:
    """Whether a job in ``state`` is ever due. One that is not (final, or uncertain:
    only a provider's own signal settles it) has no next check at all."""
    return state in DUE_STATES


def provider_event(status: UpdateStatus) -> Event:
    """The event a provider signal of ``status`` is."""
    return PROVIDER_EVENTS[status]
