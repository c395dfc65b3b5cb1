"""A provider call, counted and logged (never with its URL or key)."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TypeVar

from orchestrator.common.metrics import Metrics
from orchestrator.core.parts import log
from schemas.errors import ProviderError
from schemas.jobs import Job

T = TypeVar("T")


async def provider_call(metrics: Metrics, job: Job, call: str, request: Awaitable[T]) -> T:
    """Await one provider call for ``job``; ``call`` names it (submit, poll, reconcile)."""
    started = time.perf_counter()
    outcome = "ok"
    try:
        return await request
    except ProviderError as exc:
        outcome = exc.code
        raise
    finally:
        metrics.provider_calls.labels(job.provider, call, outcome).inc()
        log.info(
            "provider.call",
            extra={
                "job_id": job.id,
                "provider": job.provider,
                "action": call,
                "outcome": outcome,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
