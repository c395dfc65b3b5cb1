"""The Store: domain verbs over jobs, the callback inbox and job history."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from orchestrator.domain.cooldown import CooldownPolicy, Health
from orchestrator.domain.states import Event
from orchestrator.store.outbox import Outbox
from schemas.jobs import Attempt, Failure, Job, JobState, Operation, ResultInfo


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # stored, not processed yet (or its job is not known yet)
    APPLIED = "applied"  # parsed, matched and applied (or a harmless no-op)
    DUPLICATE = "duplicate"  # same provider, job and body as an earlier delivery
    UNMATCHED = "unmatched"  # parsed, but no job of ours has that provider job id
    DEAD = "dead"  # could not be parsed or applied: kept for replay


@dataclass(frozen=True, slots=True)
class NewJob:
    id: str
    provider: str
    scale: float
    options: dict[str, Any]
    metadata: Any
    input_url: str | None
    input_key: str | None
    created_at: datetime
    deadline_at: datetime
    idempotency_key: str | None = None
    request_hash: str | None = None
    retry_of: str | None = None
    operation: Operation = Operation.UPSCALE
    prompt: str | None = None
    mask_url: str | None = None
    mask_key: str | None = None
    input_width: int | None = None
    input_height: int | None = None
    route: tuple[str, ...] = ()
    route_name: str | None = None
    route_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_cost: float | None = None


# Not frozen: one is made for every callback, and a frozen dataclass takes two and a
# half times as long to build. Nothing changes one after it is made.
@dataclass(slots=True)
class NewDelivery:
    id: str
    provider: str
    claimed_job_id: str | None
    received_at: datetime
    headers: dict[str, str]
    body: bytes
    dedupe_key: str
    source: str = "live"

    def stored(self, status: DeliveryStatus) -> Delivery:
        """The delivery as just recorded, with the status the inbox gave it."""
        return Delivery(
            id=self.id,
            provider=self.provider,
            claimed_job_id=self.claimed_job_id,
            received_at=self.received_at,
            headers=self.headers,
            body=self.body,
            source=self.source,
            status=status,
            job_id=self.claimed_job_id,
            provider_job_id=None,
            error=None,
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    provider: str
    claimed_job_id: str | None
    received_at: datetime
    headers: dict[str, str]
    body: bytes
    source: str
    status: DeliveryStatus
    job_id: str | None
    provider_job_id: str | None
    error: str | None
    replays: int = 0


@dataclass(frozen=True, slots=True)
class DeliveryMark:
    """A delivery's outcome, written with the transition it caused (or alone)."""

    delivery_id: str
    status: DeliveryStatus
    at: datetime
    job_id: str | None = None
    provider_job_id: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CallbackMatch:
    """What a callback naming only a provider job id matches, read in one snapshot:
    the job holding that id, else whether a submit to the provider is in flight
    (whose answer, not stored yet, may bring that id)."""

    job: Job | None
    submit_in_flight: bool


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    at: datetime
    from_state: JobState | None
    to_state: JobState
    event: str
    cause: str
    detail: dict[str, Any] | None


_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class Changes:
    """Columns a transition may set besides the state. Unset fields stay as they are."""

    provider_job_id: str | None = _UNSET
    result_url: str | None = _UNSET
    failure: Failure | None = _UNSET
    result: ResultInfo | None = _UNSET
    cost: float | None = _UNSET
    next_check_at: datetime | None = _UNSET
    attempts: int = _UNSET
    refetches: int = _UNSET
    lease_until: datetime | None = _UNSET
    # A move to the next attempt: its provider and options, its number and start,
    # and the ended attempts (the one just ended last).
    provider: str = _UNSET
    options: dict[str, Any] = _UNSET
    attempt: int = _UNSET
    attempt_started_at: datetime | None = _UNSET
    past_attempts: tuple[Attempt, ...] = _UNSET
    detail: dict[str, Any] | None = field(default=None)

    def items(self) -> dict[str, Any]:
        names = (
            "provider_job_id",
            "result_url",
            "failure",
            "result",
            "cost",
            "next_check_at",
            "attempts",
            "refetches",
            "lease_until",
            "provider",
            "options",
            "attempt",
            "attempt_started_at",
            "past_attempts",
        )
        return {n: getattr(self, n) for n in names if getattr(self, n) is not _UNSET}


@dataclass(frozen=True, slots=True)
class DailySpend:
    """What a provider reported it cost today, over how many ended attempts."""

    credits: float
    jobs: int

    @property
    def per_job(self) -> float:
        return self.credits / self.jobs if self.jobs else 0.0


TransitionListener = Callable[[Job, Job, str], None]


class Store(Outbox, Protocol):
    transition_listeners: list[TransitionListener]

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    async def schema_version(self) -> int: ...

    # jobs
    async def create_job(self, new: NewJob) -> tuple[Job, bool]:
        """Insert a job in ``queued``; with an idempotency key already used,
        return the existing job and False (IdempotencyConflict if the body differs)."""
        ...

    async def get_job(self, job_id: str) -> Job | None: ...

    async def find_job(self, provider: str, provider_job_id: str) -> Job | None: ...

    async def list_jobs(
        self,
        *,
        state: JobState | None = None,
        provider: str | None = None,
        after: str | None = None,
        limit: int = 50,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        operation: Operation | None = None,
        text: str | None = None,
    ) -> list[Job]:
        """Jobs newest first, after the cursor ``after`` (a job id). ``text`` matches
        a job id or provider job id exactly, or any part of the metadata's JSON
        (ignoring the case of ASCII letters) when it is three characters or longer."""
        ...

    async def apply_transition(
        self,
        job: Job,
        event: Event,
        to_state: JobState,
        *,
        cause: str,
        changes: Changes | None = None,
        now: datetime,
        mark: DeliveryMark | None = None,
    ) -> Job | None:
        """Compare-and-set: apply only if the job is still at ``job.version``.
        Writes a history row in the same transaction, and ``mark``, the outcome of
        the delivery that caused it, if given. None (and nothing written, the mark
        neither) if another writer won."""
        ...

    async def update_job(
        self, job: Job, changes: Changes, *, now: datetime, mark: DeliveryMark | None = None
    ) -> Job | None:
        """Compare-and-set change of non-state columns (schedule, attempts), with
        ``mark`` in the same transaction if given."""
        ...

    async def lease_due(self, *, now: datetime, lease_s: float, limit: int) -> list[Job]:
        """Jobs whose next check is due and that nobody holds, leased to the caller."""
        ...

    async def next_due_at(self) -> datetime | None: ...

    async def interrupted_submissions(self, *, now: datetime) -> list[Job]:
        """Jobs left in ``submitting`` whose lease ran out: their submit call was cut off."""
        ...

    async def lease_job(self, job: Job, *, now: datetime, lease_s: float) -> Job | None: ...

    async def clear_leases(self) -> None:
        """Drop every lease (outbound deliveries too) but those of jobs in ``submitting``:
        on a single-process start-up, whoever held them is gone."""
        ...

    async def history(self, job_id: str) -> list[HistoryEntry]: ...

    # the callback inbox
    async def record_delivery(self, new: NewDelivery) -> Delivery:
        """Store a raw delivery and commit. A duplicate is stored as such."""
        ...

    def append_received(self, new: NewDelivery) -> Awaitable[None]:
        """Append a callback as acknowledged and commit (the awaitable completes once
        committed, or fails with StoreUnavailable), before its answer: no
        duplicate check and no index but its key, so it is cheap. Seen by
        ``get_delivery`` and ``count_deliveries`` as pending at once; among the
        other deliveries (a duplicate as such) once ``admit_received`` files it."""
        ...

    async def admit_received(self, *, limit: int) -> list[Delivery]:
        """File up to ``limit`` appended callbacks, oldest first, among the deliveries
        in one transaction; a duplicate (same dedupe key as one filed before, or as
        an earlier one of this group) as ``duplicate``. The deliveries as filed."""
        ...

    async def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    async def match_callback(self, provider: str, provider_job_id: str) -> CallbackMatch:
        """The job holding ``provider_job_id``, and whether a submit to ``provider``
        is in flight, in one read: a submit answer stored meanwhile is seen by
        one of the two, never by neither."""
        ...

    async def pending_deliveries(self, *, limit: int) -> list[Delivery]: ...

    async def stranded_waiting(self, *, limit: int) -> list[Delivery]:
        """Pending deliveries that waited for their job's submit answer, whose job
        has it now: left behind by a process that died before applying them."""
        ...

    async def deliveries_waiting_for(
        self, job_id: str, provider: str, provider_job_id: str | None
    ) -> list[Delivery]:
        """Pending deliveries that belong to this job: by the job id in their
        token, or by the provider job id they carry."""
        ...

    async def mark_delivery(
        self,
        delivery_id: str,
        status: DeliveryStatus,
        *,
        now: datetime,
        job_id: str | None = None,
        provider_job_id: str | None = None,
        error: str | None = None,
    ) -> None: ...

    async def count_deliveries(
        self,
        status: DeliveryStatus | None = None,
        *,
        since: datetime | None = None,
        provider: str | None = None,
    ) -> int:
        """How many deliveries there are (in ``status``; received at or after ``since``;
        from ``provider``)."""
        ...

    async def list_deliveries(
        self,
        *,
        status: DeliveryStatus | None = None,
        provider: str | None = None,
        since: datetime | None = None,
        job_id: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[Delivery]:
        """Deliveries, newest first; with ``after`` (a delivery id: the last one of the
        previous page), only those that come after it in that order."""
        ...

    async def requeue_delivery(self, delivery_id: str) -> None:
        """Make a stored delivery pending again for an operator replay (counted)."""
        ...

    async def job_counts(self, *, since: datetime | None = None) -> dict[tuple[str, str], int]:
        """How many jobs there are by (state, provider); with ``since``, only the jobs
        created at or after it (the console's last hour and day)."""
        ...

    async def oldest_pending_outbound(self) -> datetime | None: ...

    async def count_stuck(self, *, created_before: datetime) -> int: ...

    async def submitting(self, provider: str) -> bool:
        """Is a submit call to ``provider`` in flight (a job in ``submitting``)?"""
        ...

    async def expire_waiting(self, *, before: datetime, now: datetime) -> int:
        """Pending deliveries matched to no job and received before ``before``
        become ``unmatched``: no submit answer claimed them in time."""
        ...

    # provider budgets, shared by every process on the database
    async def take_budget(
        self,
        provider: str,
        kind: str,
        windows: list[tuple[int, float]],
        *,
        now: datetime,
        cooldown_s: float = 0.0,
    ) -> float:
        """Take one call: 0.0 (and the call is recorded) if every window
        ``(limit, period_s)`` has room (a limit <= 0 is unlimited), no cooldown is
        active and the last call granted is at least ``cooldown_s`` old; else the
        seconds to wait, and nothing is recorded."""
        ...

    async def count_budget_calls(self, provider: str, kind: str, *, since: datetime) -> int:
        """How many calls of ``kind`` to ``provider`` were granted after ``since`` (what
        a budget window ending now has used; windows no longer than the longest
        configured one)."""
        ...

    async def cool_down_budget(self, provider: str, kind: str, *, until: datetime) -> None:
        """Grant no call of ``kind`` to ``provider`` before ``until`` (Retry-After);
        an active cooldown that ends later is kept."""
        ...

    # provider health and spend, shared by every process on the database
    async def provider_health(self) -> dict[str, Health]:
        """Every provider's health that was ever recorded (the others are healthy)."""
        ...

    async def admit_provider(
        self, provider: str, job_id: str, *, now: datetime, policy: CooldownPolicy
    ) -> bool:
        """May ``job_id`` be submitted to ``provider`` now? False while it cools down;
        after, the first job asking is its one probe (atomically)."""
        ...

    async def record_provider_result(
        self, provider: str, *, ok: bool, now: datetime, policy: CooldownPolicy
    ) -> Health:
        """Count a success or failure of ``provider`` (atomically) and return its health."""
        ...

    async def spend_today(self, *, now: datetime) -> dict[str, DailySpend]:
        """Each provider's reported spend of ``now``'s UTC day. An attempt's cost is
        added when it ends, in the transition that ends it."""
        ...
