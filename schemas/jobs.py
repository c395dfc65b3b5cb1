"""Jobs, their states, and what a provider can tell us about one."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
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
