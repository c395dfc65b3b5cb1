"""Creating jobs: from a client's request, or as the retry of an earlier job.

A client's job is keyed by a digest of what was asked, so the same idempotency
key with the same request finds the job made the first time.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from orchestrator.common.ids import new_id
from orchestrator.core.parts import Parts, log
from orchestrator.outbound.subscriptions import new_subscription
from orchestrator.store.outbox import Subscription
from orchestrator.store.protocol import NewJob
from schemas.api import CreateJob
from schemas.jobs import Job


class Intake:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    def _deadline(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.parts.config.job_deadline_s)

    async def create_job(
        self, request: CreateJob, *, idempotency_key: str | None = None
    ) -> tuple[Job, bool]:
        """The job for ``request`` and whether it was made now (not found by its key)."""
        parts = self.parts
        provider = parts.providers[request.provider]
        options = provider.validate_options(request.scale, request.options)
        now = parts.clock.now()
        job_id = new_id("job", now)
        image_digest = (
            hashlib.sha256(request.image_bytes).hexdigest() if request.image_bytes else None
        )
        staged = request.image_staged
        if staged is not None:
            image_digest = staged.sha256
        hashed: list[Any] = [
            request.provider,
            request.scale,
            options,
            request.metadata,
            request.image_url,
            image_digest,
        ]
        if request.webhook_url is not None:
            # Part of what was asked: the same key with another webhook is a conflict.
            # (Only when set, so the digests of jobs stored before stay the same.)
            hashed.append({"webhook_url": request.webhook_url})
        digest = hashlib.sha256(
            json.dumps(hashed, sort_keys=True, default=str).encode()
        ).hexdigest()
        input_key = None
        if request.image_bytes is not None:
            parts.inputs.check(request.image_bytes)
        if request.image_bytes is not None:
            input_key = await parts.inputs.save(job_id, request.image_bytes)
        if staged is not None:
            input_key = await parts.inputs.save_staged(job_id, staged)
        new = NewJob(
            id=job_id,
            provider=request.provider,
            scale=request.scale,
            options=options,
            metadata=request.metadata,
            input_url=request.image_url,
            input_key=input_key,
            created_at=now,
            deadline_at=self._deadline(now),
            idempotency_key=idempotency_key,
            request_hash=digest,
        )
        hook = None
        if request.webhook_url is not None:
            # The job's own subscription exists before the job, so it gets job.queued too.
            hook = new_subscription(
                new_id("sub", now), request.webhook_url, None, now=now, job_id=job_id
            )
            await parts.store.create_subscription(hook)
        try:
            job, created = await parts.store.create_job(new)
        except BaseException:
            await self._undo(input_key, hook)
            raise
        if not created:
            await self._undo(input_key, hook)
        if created:
            log.info(
                "job.created",
                extra={"job_id": job.id, "provider": job.provider, "action": "created"},
            )
            parts.wake()
        return job, created

    async def _undo(self, input_key: str | None, hook: Subscription | None) -> None:
        if input_key is not None:
            await self.parts.inputs.discard(input_key)
        if hook is not None:
            await self.parts.store.delete_subscription(hook.id, now=self.parts.clock.now())

    async def create_retry(self, job: Job) -> Job:
        """A new job asking what ``job`` asked, with the same input, linked to it.
        Whether ``job`` may be retried is the caller's to decide."""
        now = self.parts.clock.now()
        new = NewJob(
            id=new_id("job", now),
            provider=job.provider,
            scale=job.scale,
            options=job.options,
            metadata=job.metadata,
            input_url=job.input_url,
            input_key=job.input_key,
            created_at=now,
            deadline_at=self._deadline(now),
            request_hash=hashlib.sha256(
                json.dumps(["retry", job.id, now.isoformat()]).encode()
            ).hexdigest(),
            retry_of=job.id,
        )
        created, _ = await self.parts.store.create_job(new)
        self.parts.wake()
        return created
