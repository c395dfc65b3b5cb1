"""Delivers outbox events to subscribers as signed webhooks, with retries.

Deliveries of one job's events to one subscription go out in order: the store
hands out a delivery only once the earlier ones for that job are settled.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from datetime import timedelta

import httpx

from orchestrator.common.clock import Clock
from orchestrator.outbound.schedule import RetrySchedule
from orchestrator.outbound.signatures import signed_headers
from orchestrator.store.outbox import OutboundStatus, OutboundTask, Outbox
from schemas.errors import ForbiddenURL, UpscaleError

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self,
        *,
        store: Outbox,
        client: httpx.AsyncClient,
        clock: Clock,
        schedule: RetrySchedule,
        timeout_s: float = 10.0,
        disable_after: int = 50,
        concurrency: int = 16,
        rng: random.Random | None = None,
        on_attempt: Callable[[OutboundStatus], None] | None = None,
        lease_s: float = 120.0,
    ) -> None:
        self.store = store
        self.client = client
        self.clock = clock
        self.schedule = schedule
        self.timeout_s = timeout_s
        self.disable_after = disable_after
        self.rng = rng or random.Random()
        self.on_attempt = on_attempt
        # How long a worker holds deliveries it is sending; a dead worker's are
        # sent again after it (consumers dedupe by webhook-id).
        self.lease_s = max(lease_s, timeout_s * 2)
        self._slots = asyncio.Semaphore(concurrency)

    async def run_once(self, *, limit: int = 64) -> int:
        """Deliver what is due now; returns how many deliveries were attempted."""
        tasks = await self.store.lease_outbound(
            now=self.clock.now(), lease_s=self.lease_s, limit=limit
        )
        if tasks:
            await asyncio.gather(*(self._deliver(t) for t in tasks))
        return len(tasks)

    async def run_until_idle(self, *, max_rounds: int = 1000) -> None:
        for _ in range(max_rounds):
            if await self.run_once() == 0:
                return

    async def run_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # Listen before looking, so an event written meanwhile still wakes us.
            woken = asyncio.ensure_future(self.store.events_written.wait())
            stopper = asyncio.ensure_future(stop.wait())
            try:
                try:
                    done = await self.run_once()
                except UpscaleError:
                    log.exception("outbound.loop_error")
                    done = 0
                    await asyncio.sleep(1.0)
                if done:
                    continue
                nxt = await self.store.next_outbound_due_at()
                timeout = 60.0 if nxt is None else (nxt - self.clock.now()).total_seconds()
                await asyncio.wait(
                    {woken, stopper},
                    timeout=max(0.0, min(60.0, timeout)),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                woken.cancel()
                stopper.cancel()

    async def _deliver(self, task: OutboundTask) -> None:
        async with self._slots:
            now = self.clock.now()
            secrets_ = [s.reveal() for s in task.subscription.live_secrets(now)]
            headers = signed_headers(secrets_, task.event.id, int(now.timestamp()), task.event.body)
            started = time.perf_counter()
            status_code: int | None = None
            error: str | None = None
            final = False
            try:
                response = await self.client.post(
                    task.subscription.url,
                    content=task.event.body.encode(),
                    headers=headers,
                    timeout=self.timeout_s,
                )
                status_code = response.status_code
                ok = 200 <= status_code < 300
                if not ok:
                    error = f"answered {status_code}"
            except ForbiddenURL as exc:
                # The guard refuses this address on every try: dead at once, not
                # retried for hours (a subscription stored before it was refused).
                ok, error, final = False, exc.message, True
            except UpscaleError as exc:
                ok, error = False, exc.message
            except httpx.HTTPError as exc:
                ok, error = False, f"{type(exc).__name__}: {exc}"[:300]
            duration_ms = (time.perf_counter() - started) * 1000.0
            retry_at = None
            if not ok and not final:
                delay = self.schedule.next_delay_s(task.attempts + 1, self.rng)
                if delay is not None:
                    retry_at = self.clock.now() + timedelta(seconds=delay)
            status = await self.store.record_attempt(
                task.id,
                task.subscription.id,
                now=self.clock.now(),
                ok=ok,
                status_code=status_code,
                error=error,
                duration_ms=duration_ms,
                retry_at=retry_at,
                disable_after=self.disable_after,
            )
            if self.on_attempt is not None:
                self.on_attempt(status)
            log.info(
                "outbound.attempt",
                extra={
                    "action": status.value,
                    "event_id": task.event.id,
                    "job_id": task.event.job_id,
                    "subscription_id": task.subscription.id,
                    "status": status_code,
                    "error": error,
                },
            )
