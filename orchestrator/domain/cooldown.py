"""A provider's cool-down: pure, with the time passed in.

A provider that keeps failing (errors, timeouts, 5xx, 429, refusals) is skipped
for a cool-down; when it ends, one job is let through as a probe. A probe that
succeeds (or any success) resets everything; one that fails starts a longer
cool-down, up to a cap. The store keeps one ``Health`` per provider, shared by
every worker, and changes it with these functions inside one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum


class HealthState(StrEnum):
    HEALTHY = "healthy"
    COOLING = "cooling"  # skipped until the cool-down ends
    PROBE_READY = "probe_ready"  # cool-down over: the next job is the probe
    PROBING = "probing"  # one probe job is out; others wait for its answer


@dataclass(frozen=True, slots=True)
class CooldownPolicy:
    threshold: int = 3  # failures in a row that start a cool-down
    base_s: float = 30.0  # the first cool-down
    factor: float = 2.0  # each failed probe multiplies it
    cap_s: float = 900.0
    # A probe that never answers frees the provider for another probe after this.
    probe_lease_s: float = 300.0


@dataclass(frozen=True, slots=True)
class Health:
    provider: str
    failures: int = 0  # in a row
    cooldown_s: float = 0.0  # length of the current (or last) cool-down; 0: none
    until: datetime | None = None
    probe_job: str | None = None
    probe_until: datetime | None = None
    total_failures: int = 0
    cooldowns: int = 0

    def state(self, now: datetime) -> HealthState:
        if self.until is None:
            return HealthState.HEALTHY
        if now < self.until:
            return HealthState.COOLING
        if self.probe_job is not None and self.probe_until is not None and now < self.probe_until:
            return HealthState.PROBING
        return HealthState.PROBE_READY


def failed(health: Health, now: datetime, policy: CooldownPolicy) -> Health:
    """A failure of ``health.provider``: counted; a cool-down starts (or grows)
    at the threshold, or when a probe fails."""
    counted = replace(
        health, failures=health.failures + 1, total_failures=health.total_failures + 1
    )
    state = health.state(now)
    if state is HealthState.COOLING:
        return counted  # already skipped: late failures of jobs sent before
    probing = state in (HealthState.PROBING, HealthState.PROBE_READY)
    if not probing and counted.failures < policy.threshold:
        return counted
    length = (
        policy.base_s
        if health.cooldown_s <= 0
        else min(policy.cap_s, health.cooldown_s * policy.factor)
    )
    return replace(
        counted,
        cooldown_s=length,
        until=now + timedelta(seconds=length),
        probe_job=None,
        probe_until=None,
        cooldowns=health.cooldowns + 1,
    )


def succeeded(health: Health) -> Health:
    """A success: the provider is healthy again."""
    return replace(health, failures=0, cooldown_s=0.0, until=None, probe_job=None, probe_until=None)


def admit(
    health: Health, job_id: str, now: datetime, policy: CooldownPolicy
) -> tuple[bool, Health]:
    """May ``job_id`` be submitted to the provider now? When its cool-down is over
    and no probe is out, the job becomes the probe."""
    state = health.state(now)
    if state is HealthState.HEALTHY:
        return True, health
    if state is HealthState.COOLING:
        return False, health
    if state is HealthState.PROBING:
        return health.probe_job == job_id, health
    probe = replace(
        health, probe_job=job_id, probe_until=now + timedelta(seconds=policy.probe_lease_s)
    )
    return True, probe


def cooling(health: Health, now: datetime) -> bool:
    """Whether a job choosing its next provider should pass this one by."""
    return health.state(now) in (HealthState.COOLING, HealthState.PROBING)
