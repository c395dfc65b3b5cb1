"""Making and rotating subscriptions (pure: the clock and ids come in)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from orchestrator.common.settings import Secret
from orchestrator.domain.events import EVENT_TYPES
from orchestrator.outbound.signatures import new_secret
from orchestrator.store.outbox import SigningSecret, Subscription
from schemas.errors import RejectedInput


def check_url(url: Any) -> str:
    if not isinstance(url, str) or len(url) > 2048:
        raise RejectedInput("url must be an http(s) URL")
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise RejectedInput("url must be an http(s) URL") from exc
    if parts.scheme not in ("http", "https") or not host:
        raise RejectedInput("url must be an http(s) URL with a host")
    return url.strip()


def check_types(types: Any) -> tuple[str, ...] | None:
    if types is None:
        return None
    if isinstance(types, str):
        types = [t for t in types.split(",") if t.strip()]
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise RejectedInput("types must be a list of event types")
    unknown = sorted({t.strip() for t in types} - set(EVENT_TYPES))
    if unknown:
        raise RejectedInput(f"unknown event types: {', '.join(unknown)}")
    return tuple(dict.fromkeys(t.strip() for t in types)) or None


def new_subscription(
    subscription_id: str,
    url: Any,
    types: Any,
    *,
    now: datetime,
    job_id: str | None = None,
) -> Subscription:
    return Subscription(
        id=subscription_id,
        url=check_url(url),
        types=check_types(types),
        job_id=job_id,
        secrets=(SigningSecret(Secret(new_secret()), None),),
        created_at=now,
        disabled_at=None,
        disabled_reason=None,
        consecutive_failures=0,
    )


def rotated(
    subscription: Subscription, *, now: datetime, grace_s: float
) -> tuple[Subscription, str]:
    """A new current secret; the old ones keep signing for ``grace_s`` seconds."""
    fresh = new_secret()
    until = now + timedelta(seconds=grace_s)
    kept: Sequence[SigningSecret] = [
        SigningSecret(s.secret, s.expires_at if s.expires_at is not None else until)
        for s in subscription.secrets
        if s.expires_at is None or s.expires_at > now
    ]
    secrets_ = (*kept, SigningSecret(Secret(fresh), None))
    return replace(subscription, secrets=secrets_), fresh


def current_secret(subscription: Subscription) -> str:
    for s in reversed(subscription.secrets):
        if s.expires_at is None:
            return s.secret.reveal()
    return subscription.secrets[-1].secret.reveal()


def public_subscription(sub: Subscription, *, with_secret: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": sub.id,
        "url": sub.url,
        "types": list(sub.types) if sub.types else None,
        "job_id": sub.job_id,
        "created_at": sub.created_at.isoformat().replace("+00:00", "Z"),
        "disabled": sub.disabled_at is not None,
        "disabled_reason": sub.disabled_reason,
        "consecutive_failures": sub.consecutive_failures,
    }
    if with_secret:
        out["secret"] = current_secret(sub)
    return out
