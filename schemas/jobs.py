"""Jobs, their states, and what a provider can tell us about one."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    QUEUED = "queued"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    FETCHING = "fetching"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class Operation(StrEnum):
    """What a job asks of its provider. ``upscale`` is the default, so clients that
    send no operation keep working; ``replace`` repaints a masked area from a prompt."""

    UPSCALE = "upscale"
    REPLACE = "replace"


class FailureReason(StrEnum):
    PROVIDER_FAILED = "provider_failed"
    PROVIDER_AUTH = "provider_auth"
    NSFW = "nsfw"
    REJECTED_INPUT = "rejected_input"
    INSUFFICIENT_CREDIT = "insufficient_credit"
    RESULT_EXPIRED = "result_expired"
    RESULT_INVALID = "result_invalid"
    RESULT_FORBIDDEN = "result_forbidden"
    RESULT_UNAVAILABLE = "result_unavailable"
    DEADLINE = "deadline"
    # The submit call got no answer: the provider may have the job and bill it.
    SUBMISSION_UNCERTAIN = "submission_uncertain"
    # The next attempt of the job's route would pass its max_cost or a provider's
    # daily spend cap.
    SPEND_LIMIT = "spend_limit"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One provider's go at a job. The job row holds the current attempt; the ended
    ones are kept with it, in order, never changed again."""

    number: int  # 1 for the first
    provider: str
    provider_job_id: str | None
    state: str  # the job's state when the attempt ended (or now, for the current one)
    failure: Failure | None
    cost: float | None
    started_at: datetime
    ended_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "provider": self.provider,
            "provider_job_id": self.provider_job_id,
            "state": self.state,
            "failure": self.failure.to_json() if self.failure else None,
            "cost": self.cost,
            "started_at": self.started_at.timestamp(),
            "ended_at": self.ended_at.timestamp() if self.ended_at else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attempt:
        failure = data.get("failure")
        ended = data.get("ended_at")
        return cls(
            number=int(data["number"]),
            provider=str(data["provider"]),
            provider_job_id=data.get("provider_job_id"),
            state=str(data["state"]),
            failure=Failure(failure["reason"], failure["message"]) if failure else None,
            cost=data.get("cost"),
            started_at=datetime.fromtimestamp(float(data["started_at"]), UTC),
            ended_at=datetime.fromtimestamp(float(ended), UTC) if ended is not None else None,
        )


@dataclass(frozen=True, slots=True)
class Failure:
    reason: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message}


@dataclass(frozen=True, slots=True)
class ResultInfo:
    """A result image stored by us: where it is and what we checked."""

    key: str
    content_type: str
    bytes: int
    sha256: str
    width: int
    height: int
    format: str


class UpdateStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ProviderUpdate:
    """Every provider signal (callback, poll answer, sync submit answer), normalised."""

    provider: str
    provider_job_id: str | None
    status: UpdateStatus
    result_url: str | None = None
    result_bytes: bytes | None = field(default=None, repr=False)
    failure: Failure | None = None
    cost: float | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    provider: str
    state: JobState
    version: int
    scale: float
    options: dict[str, Any]
    metadata: Any
    input_url: str | None
    input_key: str | None
    provider_job_id: str | None
    result_url: str | None
    failure: Failure | None
    result: ResultInfo | None
    cost: float | None
    attempts: int
    refetches: int
    created_at: datetime
    updated_at: datetime
    deadline_at: datetime
    next_check_at: datetime | None
    idempotency_key: str | None = None
    retry_of: str | None = None
    # What the job asks for; a replace job has a prompt and a mask (an uploaded
    # input like the image: ``mask_key``, or a URL the client gave: ``mask_url``).
    operation: Operation = Operation.UPSCALE
    prompt: str | None = None
    mask_url: str | None = None
    mask_key: str | None = None
    # The input image's size when known at intake (a replace job's uploaded image):
    # the result must have the same.
    input_width: int | None = None
    input_height: int | None = None
    # The providers to try in order (just ``provider`` for a single-provider job),
    # the named route they came from, each one's checked options, and the job's own
    # spend limit in credits.
    route: tuple[str, ...] = ()
    route_name: str | None = None
    route_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_cost: float | None = None
    # The current attempt's number (1 for the first) and when it started; the ended
    # attempts, oldest first.
    attempt: int = 1
    attempt_started_at: datetime | None = None
    past_attempts: tuple[Attempt, ...] = ()

    @property
    def providers(self) -> tuple[str, ...]:
        """The job's route; a job stored before routes existed has its provider."""
        return self.route or (self.provider,)

    @property
    def route_index(self) -> int:
        """Where the current attempt's provider is on the route."""
        route = self.providers
        return route.index(self.provider) if self.provider in route else 0

    @property
    def spent(self) -> float:
        """What the ended attempts reported they cost."""
        return sum(a.cost or 0.0 for a in self.past_attempts)

    def current_attempt(self) -> Attempt:
        """The current attempt as the job's own columns tell it."""
        return Attempt(
            number=self.attempt,
            provider=self.provider,
            provider_job_id=self.provider_job_id,
            state=self.state.value,
            failure=self.failure,
            cost=self.cost,
            started_at=self.attempt_started_at or self.created_at,
            ended_at=self.updated_at if self.state.terminal else None,
        )
