"""Records of the event outbox: events, subscriptions and outbound deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from orchestrator.events import event_id
from orchestrator.settings import Secret


@dataclass(frozen=True, slots=True)
class EventRecord:
    seq: int
    type: str
    job_id: str
    created_at: datetime
    body: str

    @property
    def id(self) -> str:
        return event_id(self.seq)


@dataclass(frozen=True, slots=True)
class SigningSecret:
    secret: Secret
    expires_at: datetime | None  # None: the current secret


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    url: str
    types: tuple[str, ...] | None
    job_id: str | None
    secrets: tuple[SigningSecret, ...]
    created_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None
    consecutive_failures: int

    def live_secrets(self, now: datetime) -> list[Secret]:
        """Secrets that sign a delivery now: the current one and any in their grace period."""
        return [s.secret for s in self.secrets if s.expires_at is None or s.expires_at > now]


class OutboundStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class OutboundTask:
    """One delivery to make now: the event, where to, and how many tries so far."""

    id: int
    event: EventRecord
    subscription: Subscription
    attempts: int


@dataclass(frozen=True, slots=True)
class OutboundRecord:
    id: int
    event_id: str
    event_type: str
    job_id: str
    subscription_id: str
    status: OutboundStatus
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float
