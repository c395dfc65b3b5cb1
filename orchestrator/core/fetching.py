"""Fetching a job's result: download, check and store it, or say why not."""

from __future__ import annotations

from orchestrator.core.applying import transition
from orchestrator.core.moves import back_off, past_deadline, result_failed
from orchestrator.core.parts import Parts, expected_size, log
from orchestrator.domain.states import Event
from orchestrator.store.protocol import Changes
from schemas.errors import FetchError
from schemas.jobs import Failure, FailureReason, Job


class ResultCollector:
    """Takes a job in ``fetching`` to its end: the result stored, or failed."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    async def fetch(self, job: Job) -> None:
        parts = self.parts
        if job.result is not None:
            # Inline data already stored (a kill cut the job off after that): record it.
            await transition(
                parts.store,
                job,
                Event.RESULT_STORED,
                cause="fetch",
                now=parts.clock.now(),
                changes=Changes(detail={"bytes": job.result.bytes, "sha256": job.result.sha256}),
            )
            return
        if await past_deadline(parts, job):
            return
        if not job.result_url:
            await result_failed(
                parts,
                job,
                Failure(FailureReason.RESULT_INVALID, "the provider gave no result URL"),
            )
            return
        try:
            result = await parts.fetcher.fetch(job.result_url, job.id, size=expected_size(job))
        except FetchError as exc:
            await self._failed(job, exc)
            return
        await transition(
            parts.store,
            job,
            Event.RESULT_STORED,
            cause="fetch",
            now=parts.clock.now(),
            changes=Changes(
                result=result,
                detail={
                    "bytes": result.bytes,
                    "sha256": result.sha256,
                    "width": result.width,
                    "height": result.height,
                },
            ),
        )

    async def _failed(self, job: Job, exc: FetchError) -> None:
        parts = self.parts
        now = parts.clock.now()
        log.info(
            "result.fetch_failed",
            extra={
                "job_id": job.id,
                "provider": job.provider,
                "action": exc.code,
                "error": exc.message,
            },
        )
        if exc.retryable:
            await back_off(parts, job)
            return
        # A synchronous provider has no status endpoint to ask for a fresh URL.
        can_refresh = parts.providers[job.provider].callback_mode != "none"
        if exc.reason == FailureReason.RESULT_EXPIRED and job.refetches < 1 and can_refresh:
            # One re-poll for a fresh URL before giving up.
            await transition(
                parts.store,
                job,
                Event.RESULT_REFRESH,
                cause="fetch",
                now=now,
                changes=Changes(refetches=job.refetches + 1, next_check_at=now, result_url=None),
            )
            return
        await result_failed(parts, job, Failure(exc.reason, exc.message))
