"""Records of the event outbox: events, subscriptions and outbound deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from orchestrator.common.settings import Secret
from orchestrator.common.signals import Broadcast
from orchestrator.domain.events import event_id


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

    @classmethod
    def after_attempt(cls, *, ok: bool, will_retry: bool) -> OutboundStatus:
        """A delivery after one attempt: delivered, pending a retry, or dead."""
        if ok:
            return cls.DELIVERED
        return cls.PENDING if will_retry else cls.DEAD


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


class Outbox(Protocol):
    """The outbox verbs every store implements."""

    events_written: Broadcast

    async def list_events(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        types: Sequence[str] | None = None,
        job_id: str | None = None,
    ) -> list[EventRecord]: ...

    async def get_event(self, seq: int) -> EventRecord | None: ...

    async def last_event_seq(self) -> int: ...

    async def create_subscription(self, subscription: Subscription) -> Subscription: ...

    async def get_subscription(self, subscription_id: str) -> Subscription | None: ...

    async def job_subscription(self, job_id: str) -> Subscription | None: ...

    async def list_subscriptions(
        self, *, include_job_hooks: bool = False
    ) -> list[Subscription]: ...

    async def delete_subscription(self, subscription_id: str, *, now: datetime) -> bool: ...

    async def set_subscription_secrets(
        self, subscription_id: str, secrets: Sequence[SigningSecret]
    ) -> None: ...

    async def enable_subscription(self, subscription_id: str) -> None: ...

    async def lease_outbound(
        self, *, now: datetime, lease_s: float, limit: int
    ) -> list[OutboundTask]: ...

    async def next_outbound_due_at(self) -> datetime | None: ...

    async def record_attempt(
        self,
        outbound_id: int,
        subscription_id: str,
        *,
        now: datetime,
        ok: bool,
        status_code: int | None,
        error: str | None,
        duration_ms: float,
        retry_at: datetime | None,
        disable_after: int,
    ) -> OutboundStatus: ...

    async def redeliver(
        self, seq: int, *, now: datetime, subscription_id: str | None = None
    ) -> int: ...

    async def list_outbound(
        self,
        *,
        subscription_id: str | None = None,
        event_seq: int | None = None,
        status: OutboundStatus | None = None,
        limit: int = 100,
    ) -> list[OutboundRecord]: ...

    async def attempts(self, outbound_id: int) -> list[AttemptRecord]: ...
