"""Creating jobs: from a client's request, or as the retry of an earlier job.

A client's job is keyed by a digest of what was asked, so the same idempotency
key with the same request finds the job made the first time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from orchestrator.common.ids import new_id
from orchestrator.core.parts import Parts, log
from orchestrator.core.uploads import Upload, checked_size
from orchestrator.outbound.subscriptions import new_subscription
from orchestrator.store.outbox import Subscription
from orchestrator.store.protocol import NewJob
from schemas.api import CreateJob
from schemas.errors import RejectedInput
from schemas.jobs import Job, Operation


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
        route = request.route or (request.provider,)
        route_options: dict[str, dict[str, Any]] = {}
        for name in route:
            given = request.route_options.get(name, request.options if name == route[0] else {})
            try:
                route_options[name] = parts.providers[name].validate_options(
                    request.scale, given, operation=request.operation
                )
            except RejectedInput as exc:
                if len(route) == 1:
                    raise
                raise RejectedInput(f"options.{name}: {exc.message}") from exc
        options = route_options[route[0]]
        now = parts.clock.now()
        job_id = new_id("job", now)
        image = Upload.of(request.image_bytes, request.image_staged, "image")
        mask = Upload.of(request.mask_bytes, request.mask_staged, "mask")
        hashed: list[Any] = [
            request.provider,
            request.scale,
            options,
            request.metadata,
            request.image_url,
            image.digest if image is not None else None,
        ]
        if len(route) > 1 or request.route_name is not None or request.max_cost is not None:
            # Likewise: a route is part of what was asked (single-provider digests stay).
            hashed.append(
                {
                    "route": list(route),
                    "route_name": request.route_name,
                    "route_options": route_options,
                    "max_cost": request.max_cost,
                }
            )
        if request.webhook_url is not None:
            # Part of what was asked: the same key with another webhook is a conflict.
            # (Only when set, so the digests of jobs stored before stay the same.)
            hashed.append({"webhook_url": request.webhook_url})
        if request.operation is not Operation.UPSCALE:
            # Likewise only for other operations: upscale digests stay the same.
            hashed.append({"operation": request.operation.value, "prompt": request.prompt})
            hashed.append({"mask": mask.digest if mask is not None else None})
        digest = hashlib.sha256(
            json.dumps(hashed, sort_keys=True, default=str).encode()
        ).hexdigest()
        size = await self._input_size(request, image, mask)
        input_key = await image.save(parts.inputs, job_id) if image is not None else None
        mask_key = None
        if mask is not None:
            try:
                mask_key = await mask.save(parts.inputs, f"{job_id}_mask")
            except BaseException:
                await self._undo([input_key], None)
                raise
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
            operation=request.operation,
            prompt=request.prompt,
            mask_key=mask_key,
            input_width=size[0] if size else None,
            input_height=size[1] if size else None,
            route=route if len(route) > 1 or request.route_name is not None else (),
            route_name=request.route_name,
            route_options=route_options if len(route) > 1 else {},
            max_cost=request.max_cost,
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
            await self._undo([input_key, mask_key], hook)
            raise
        if not created:
            await self._undo([input_key, mask_key], hook)
        if created:
            log.info(
                "job.created",
                extra={"job_id": job.id, "provider": job.provider, "action": "created"},
            )
            parts.wake()
        return job, created

    async def _input_size(
        self, request: CreateJob, image: Upload | None, mask: Upload | None
    ) -> tuple[int, int] | None:
        """Check the uploads are images we take; for a replace job, the image's size,
        which the mask (and later the result) must have."""
        inputs = self.parts.inputs
        if image is not None:
            image.check(inputs)
        if request.operation is not Operation.REPLACE:
            return None
        if image is None or mask is None:  # parse_create_job refuses these first
            raise RejectedInput("a replace job needs an uploaded image and mask")
        mask.check(inputs)
        width, height = await checked_size(image)
        mask_width, mask_height = await checked_size(mask)
        if (mask_width, mask_height) != (width, height):
            raise RejectedInput(
                f"mask is {mask_width}x{mask_height} pixels but the image is"
                f" {width}x{height}: they must be the same size"
            )
        return width, height

    async def _undo(self, keys: list[str | None], hook: Subscription | None) -> None:
        for key in keys:
            if key is not None:
                await self.parts.inputs.discard(key)
        if hook is not None:
            await self.parts.store.delete_subscription(hook.id, now=self.parts.clock.now())

    async def create_retry(self, job: Job) -> Job:
        """A new job asking what ``job`` asked (its operation, prompt and mask too), with
        the same input, linked to it. Whether ``job`` may be retried is the caller's to
        decide."""
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
            operation=job.operation,
            prompt=job.prompt,
            mask_url=job.mask_url,
            mask_key=job.mask_key,
            input_width=job.input_width,
            input_height=job.input_height,
            route=job.route,
            route_name=job.route_name,
            route_options=job.route_options,
            max_cost=job.max_cost,
        )
        if job.route:
            # A routed job is retried along its whole route, from the first provider.
            new = replace(
                new, provider=job.route[0], options=dict(job.route_options.get(job.route[0], {}))
            )
        created, _ = await self.parts.store.create_job(new)
        self.parts.wake()
        return created
