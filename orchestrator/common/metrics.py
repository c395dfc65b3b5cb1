"""Prometheus metrics: counters and histograms updated as work happens, gauges read
from the store when scraped. One registry per service, never the global one."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from schemas.jobs import Job, JobState

_DURATION_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
_FAST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class HealthView(Protocol):
    """A provider's health as the store keeps it (``domain/cooldown.py``)."""

    @property
    def failures(self) -> int: ...

    @property
    def total_failures(self) -> int: ...

    @property
    def cooldowns(self) -> int: ...

    def state(self, now: datetime) -> str: ...


# The health states in which routed jobs pass a provider by.
_SKIPPED = frozenset({"cooling", "probing"})


class GaugeSource(Protocol):
    async def job_counts(self) -> dict[tuple[str, str], int]: ...

    async def oldest_pending_outbound(self) -> datetime | None: ...

    async def count_stuck(self, *, created_before: datetime) -> int: ...

    async def provider_health(self) -> Mapping[str, HealthView]: ...


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.callbacks_received = Counter(
            "upscale_callbacks_received", "Provider callbacks stored", ["provider"], registry=r
        )
        self.callbacks_outcome = Counter(
            "upscale_callbacks_processed",
            "Stored callbacks by what became of them (applied, duplicate, unmatched, dead)",
            ["provider", "outcome"],
            registry=r,
        )
        self.callbacks_rejected = Counter(
            "upscale_callbacks_rejected",
            "Callbacks refused before storing (bad_token, too_large, source, store_unavailable)",
            ["reason"],
            registry=r,
        )
        self.jobs_resolved = Counter(
            "upscale_jobs_resolved",
            "Provider outcomes learned, by the signal that brought them (callback, poll, "
            "submit, reconcile, ...): poll / all is the callback miss rate",
            ["provider", "via"],
            registry=r,
        )
        self.jobs_finished = Counter(
            "upscale_jobs_finished",
            "Jobs that reached a final state",
            ["provider", "state"],
            registry=r,
        )
        self.job_duration = Histogram(
            "upscale_job_duration_seconds",
            "From the job's creation to its final state",
            ["provider", "state"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.result_latency = Histogram(
            "upscale_result_latency_seconds",
            "From the provider's success signal (callback or poll) to the result stored",
            ["provider"],
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.provider_calls = Counter(
            "upscale_provider_calls",
            "Calls to provider APIs",
            ["provider", "call", "outcome"],
            registry=r,
        )
        self.fetch_bytes = Counter(
            "upscale_fetch_bytes", "Bytes of result images stored", ["provider"], registry=r
        )
        self.fetch_failures = Counter(
            "upscale_fetch_failures",
            "Results that could not be stored",
            ["provider", "reason"],
            registry=r,
        )
        self.webhook_attempts = Counter(
            "upscale_webhook_attempts",
            "Outbound webhook attempts by result (delivered, pending = will retry, dead)",
            ["result"],
            registry=r,
        )
        self.jobs = Gauge(
            "upscale_jobs", "Jobs by state and provider", ["state", "provider"], registry=r
        )
        self.outbox_lag = Gauge(
            "upscale_outbox_lag_seconds",
            "Age of the oldest undelivered outbound webhook",
            registry=r,
        )
        self.stuck_jobs = Gauge(
            "upscale_stuck_jobs", "Submitted jobs past their expected duration", registry=r
        )
        self.failovers = Counter(
            "upscale_failovers",
            "Routed jobs moved on from one provider to the next",
            ["from_provider", "to_provider", "reason"],
            registry=r,
        )
        self.provider_cooling = Gauge(
            "upscale_provider_cooling",
            "1 while a provider is skipped by routed jobs (cooling down or probing), else 0",
            ["provider"],
            registry=r,
        )
        self.provider_failures = Gauge(
            "upscale_provider_failures",
            "Failures counted toward a provider's cool-down: in a row (streak) and in all "
            "(total), as shared by every worker",
            ["provider", "kind"],
            registry=r,
        )
        self.provider_cooldowns = Gauge(
            "upscale_provider_cooldowns", "Cool-downs a provider has had", ["provider"], registry=r
        )

    def observe_transition(self, before: Job, after: Job, cause: str) -> None:
        if after.attempt != before.attempt and after.past_attempts:
            ended = after.past_attempts[-1]
            reason = ended.failure.reason if ended.failure else "unknown"
            self.failovers.labels(before.provider, after.provider, reason).inc()
        via = cause.split(":", 1)[0]
        if before.state in (JobState.SUBMITTED, JobState.UNCERTAIN, JobState.SUBMITTING) and (
            after.state in (JobState.FETCHING, JobState.FAILED)
        ):
            self.jobs_resolved.labels(after.provider, via).inc()
        if after.state is JobState.SUCCEEDED and after.result is not None:
            self.fetch_bytes.labels(after.provider).inc(after.result.bytes)
            if before.state is JobState.FETCHING:
                latency = (after.updated_at - before.updated_at).total_seconds()
                self.result_latency.labels(after.provider).observe(max(0.0, latency))
        if (
            after.state is JobState.FAILED
            and before.state is JobState.FETCHING
            and after.failure is not None
        ):
            self.fetch_failures.labels(after.provider, after.failure.reason).inc()
        if after.state.terminal:
            self.jobs_finished.labels(after.provider, after.state.value).inc()
            took = (after.updated_at - after.created_at).total_seconds()
            self.job_duration.labels(after.provider, after.state.value).observe(max(0.0, took))

    async def refresh(self, source: GaugeSource, *, now: datetime, stuck_before: datetime) -> None:
        self.jobs.clear()
        for (state, provider), count in (await source.job_counts()).items():
            self.jobs.labels(state, provider).set(count)
        oldest = await source.oldest_pending_outbound()
        self.outbox_lag.set(0.0 if oldest is None else max(0.0, (now - oldest).total_seconds()))
        self.stuck_jobs.set(await source.count_stuck(created_before=stuck_before))
        for name, health in (await source.provider_health()).items():
            self.provider_cooling.labels(name).set(1.0 if health.state(now) in _SKIPPED else 0.0)
            self.provider_failures.labels(name, "streak").set(health.failures)
            self.provider_failures.labels(name, "total").set(health.total_failures)
            self.provider_cooldowns.labels(name).set(health.cooldowns)

    def render(self) -> bytes:
        return generate_latest(self.registry)
