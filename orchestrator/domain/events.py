"""Which transitions are events, and the event envelope (Standard Webhooks shape)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from schemas.api import job_to_public
from schemas.jobs import Job, JobState

EVENT_TYPES = (
    "job.queued",
    "job.submitted",
    "job.succeeded",
    "job.failed",
    "job.uncertain",
    "job.cancelled",
    # A routed job's attempt ended dead (``data.attempt``: provider, reason) and the
    # job goes on at the next provider (``data.failover``: from, to), same id.
    "job.attempt_failed",
    "job.failed_over",
)

Snapshot = Callable[[Job], dict[str, Any]]


def event_type(from_state: JobState | None, to_state: JobState) -> str | None:
    """The event a transition emits, or None for internal steps.

    ``job.queued`` only when a job is created (not when a throttled submit goes
    back to the queue), ``job.submitted`` only when the provider accepted it
    (not when an expired result sends it back to polling).
    """
    if from_state is None:
        return "job.queued" if to_state is JobState.QUEUED else None
    if to_state in (
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.UNCERTAIN,
        JobState.CANCELLED,
    ):
        return f"job.{to_state.value}"
    if to_state is JobState.SUBMITTED and from_state is JobState.SUBMITTING:
        return "job.submitted"
    return None


def failover_events(before: Job, after: Job) -> list[tuple[str, dict[str, Any]]]:
    """The events of a move to the next attempt, each with what it adds to the job's
    snapshot: the attempt that ended, then the move."""
    ended = after.past_attempts[-1] if after.past_attempts else None
    failure = ended.failure if ended is not None else before.failure
    attempt = {
        "number": before.attempt,
        "provider": before.provider,
        "provider_job_id": before.provider_job_id,
        "reason": failure.reason if failure else None,
        "message": failure.message if failure else None,
        "cost": ended.cost if ended is not None else before.cost,
    }
    move = {"from": before.provider, "to": after.provider, "attempt": after.attempt}
    return [("job.attempt_failed", {"attempt": attempt}), ("job.failed_over", {"failover": move})]


def default_snapshot(job: Job) -> dict[str, Any]:
    return job_to_public(job, result_url=f"/v1/jobs/{job.id}/result")


def event_id(seq: int) -> str:
    return f"evt_{seq:016d}"


def event_seq(event_id_text: str) -> int | None:
    """The sequence number of an event id, or None if it is not one of ours."""
    if not event_id_text.startswith("evt_"):
        return None
    digits = event_id_text[4:]
    return int(digits) if digits.isascii() and digits.isdigit() and len(digits) <= 18 else None


def envelope(kind: str, at: datetime, data: dict[str, Any]) -> str:
    """The event body: ``{"type", "timestamp", "data"}`` as compact JSON."""
    stamp = at.isoformat().replace("+00:00", "Z")
    return json.dumps({"type": kind, "timestamp": stamp, "data": data}, separators=(",", ":"))
