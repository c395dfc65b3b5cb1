"""The callback inbox: receive a delivery, match it to its job, apply it.

A delivery is stored before the caller answers 2xx; parsing, matching and
applying happen off the request path. A live callback is appended as
acknowledged (``append_received``: cheap, no duplicate check); each inbox pass
first files what was appended among the deliveries, which is when a duplicate
is recognised as one. One that raced its job's submit answer
waits (``pending``) until the answer is stored, then is bound to the job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import timedelta

from prometheus_client import Counter

from orchestrator.common.ids import new_id
from orchestrator.core.applying import apply_update
from orchestrator.core.parts import Parts, log
from orchestrator.domain.states import awaits_submit_answer
from orchestrator.security.signing import CallbackClaims
from orchestrator.store.protocol import (
    Changes,
    Delivery,
    DeliveryMark,
    DeliveryStatus,
    NewDelivery,
)
from schemas.errors import ProviderJobIdTaken, RejectedPayload
from schemas.jobs import Job, JobState, UpdateStatus

# Callbacks filed among the deliveries in one inbox pass, and in one transaction.
FILED_PER_PASS = 1000
FILED_PER_TRANSACTION = 200


class Inbox:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        # The counter of each provider's callbacks, looked up once.
        self._received: dict[str, Counter] = {}

    async def acknowledge(
        self, claims: CallbackClaims, headers: Mapping[str, str], body: bytes
    ) -> str:
        """Append a live callback as acknowledged and return its delivery id once it
        is committed (the caller answers 2xx only then). It is known as a duplicate
        only once filed among the deliveries."""
        parts = self.parts
        new = self._new(claims, headers, body, "live")
        await parts.store.append_received(new)
        parts.wake()
        return new.id

    async def receive(
        self,
        claims: CallbackClaims,
        headers: Mapping[str, str],
        body: bytes,
        *,
        source: str = "live",
    ) -> Delivery:
        """Store a raw delivery (the caller answers 2xx only after this returns). A
        live callback is appended (``acknowledge``); any other (an operator's
        injection) is filed at once."""
        parts = self.parts
        new = self._new(claims, headers, body, source)
        if source == "live":
            await parts.store.append_received(new)
            delivery = new.stored(DeliveryStatus.PENDING)
        else:
            delivery = await parts.store.record_delivery(new)
            if delivery.status is DeliveryStatus.DUPLICATE:
                self._duplicate(delivery)
        parts.wake()
        return delivery

    def _new(
        self, claims: CallbackClaims, headers: Mapping[str, str], body: bytes, source: str
    ) -> NewDelivery:
        parts = self.parts
        now = parts.clock.now()
        counter = self._received.get(claims.provider)
        if counter is None:
            counter = parts.metrics.callbacks_received.labels(claims.provider)
            self._received[claims.provider] = counter
        counter.inc()
        return NewDelivery(
            id=new_id("dlv", now),
            provider=claims.provider,
            claimed_job_id=claims.job_id,
            received_at=now,
            headers=dict(headers),
            body=body,
            dedupe_key=hashlib.sha256(
                f"{claims.provider}\0{claims.job_id or ''}\0".encode() + body
            ).hexdigest(),
            source=source,
        )

    async def file_received(self, *, limit: int = FILED_PER_PASS) -> int:
        """File up to ``limit`` callbacks appended since the last pass among the
        deliveries; how many were filed. In transactions of at most
        ``FILED_PER_TRANSACTION``: each holds the store's write lock, and callbacks
        arriving meanwhile wait for it before they are acknowledged."""
        total = 0
        while total < limit:
            step = min(FILED_PER_TRANSACTION, limit - total)
            filed = await self.parts.store.admit_received(limit=step)
            for delivery in filed:
                if delivery.status is DeliveryStatus.DUPLICATE:
                    self._duplicate(delivery)
            total += len(filed)
            if len(filed) < step:
                break
        return total

    def _duplicate(self, delivery: Delivery) -> None:
        self.parts.metrics.callbacks_outcome.labels(delivery.provider, "duplicate").inc()
        log.info(
            "callback.duplicate",
            extra={
                "provider": delivery.provider,
                "job_id": delivery.claimed_job_id,
                "action": "duplicate",
                "delivery_id": delivery.id,
            },
        )

    async def process(self, *, limit: int = 100) -> int:
        """Apply what is pending; returns how many deliveries were looked at."""
        store = self.parts.store
        await self.file_received()
        now = self.parts.clock.now()
        hold = timedelta(seconds=self.parts.config.longest_submit_hold_s)
        await store.expire_waiting(before=now - hold, now=now)
        pending = await store.pending_deliveries(limit=limit)
        # And those left waiting by a process that died between storing their job's
        # submit answer and applying them (its own pass would have bound them).
        pending += await store.stranded_waiting(limit=limit)
        for delivery in pending:
            await self.process_delivery(delivery)
        return len(pending)

    async def bind_waiting(self, job_id: str) -> None:
        """Callbacks that came while the job was being submitted waited for the
        answer. Once the job has left ``submitting`` (accepted, uncertain, settled),
        apply them: an early callback settles a job left uncertain, too."""
        store = self.parts.store
        job = await store.get_job(job_id)
        if job is None or awaits_submit_answer(job.state):
            return
        for delivery in await store.deliveries_waiting_for(
            job.id, job.provider, job.provider_job_id
        ):
            await self.process_delivery(delivery)

    async def _recheck(self, delivery: Delivery, depth: int) -> DeliveryStatus:
        """A delivery was just left waiting for its job's submit answer. If that
        answer was stored meanwhile (after we looked, before our mark), the submit
        side may have missed the mark: look once more, so nothing waits forever."""
        if depth > 0:
            return DeliveryStatus.PENDING
        fresh = await self.parts.store.get_delivery(delivery.id)
        if fresh is None or fresh.status is not DeliveryStatus.PENDING:
            return DeliveryStatus.PENDING
        return await self.process_delivery(fresh, depth=depth + 1)

    async def process_delivery(
        self, delivery: Delivery, *, depth: int = 0, cause: str | None = None
    ) -> DeliveryStatus:
        parts = self.parts
        now = parts.clock.now()
        provider = parts.providers.get(delivery.provider)
        if provider is None:
            await self._mark(delivery, DeliveryStatus.DEAD, error="unknown provider")
            return DeliveryStatus.DEAD
        try:
            update = provider.parse_callback(delivery.body)
        except RejectedPayload as exc:
            await self._mark(delivery, DeliveryStatus.DEAD, error=f"unparseable: {exc.message}")
            return DeliveryStatus.DEAD
        job: Job | None = None
        submit_in_flight = False
        if delivery.claimed_job_id is not None:
            job = await parts.store.get_job(delivery.claimed_job_id)
        elif update.provider_job_id is not None:
            # One read: a submit answer stored meanwhile shows as the job or as the
            # submit in flight, never as neither.
            match = await parts.store.match_callback(delivery.provider, update.provider_job_id)
            job, submit_in_flight = match.job, match.submit_in_flight
        if job is None:
            if submit_in_flight:
                # An account-wide callback may have raced a submit answer still on
                # its way: keep it until that answer is stored (or too long passes).
                await self._mark(
                    delivery, DeliveryStatus.PENDING, provider_job_id=update.provider_job_id
                )
                return await self._recheck(delivery, depth)
            await self._mark(
                delivery,
                DeliveryStatus.UNMATCHED,
                provider_job_id=update.provider_job_id,
                error="no job of ours matches this callback",
            )
            return DeliveryStatus.UNMATCHED
        if delivery.provider != job.provider or _earlier_attempt(job, update.provider_job_id):
            # A late signal of an attempt the job has moved on from: kept, never
            # applied to the current attempt.
            await self._mark(
                delivery,
                DeliveryStatus.UNMATCHED,
                job_id=job.id,
                provider_job_id=update.provider_job_id,
                error="callback for an earlier attempt of this job: recorded, not applied",
            )
            return DeliveryStatus.UNMATCHED
        if (
            job.provider_job_id is not None
            and update.provider_job_id is not None
            and job.provider_job_id != update.provider_job_id
        ):
            await self._mark(
                delivery,
                DeliveryStatus.DEAD,
                job_id=job.id,
                provider_job_id=update.provider_job_id,
                error="callback carries another provider job id than the job's",
            )
            return DeliveryStatus.DEAD
        if awaits_submit_answer(job.state):
            # It raced our submit answer: keep it until that answer is stored.
            await self._mark(
                delivery,
                DeliveryStatus.PENDING,
                job_id=job.id,
                provider_job_id=update.provider_job_id,
            )
            return await self._recheck(delivery, depth)
        # The delivery's outcome is written in the transaction of the change it
        # makes: a crash cannot leave an applied delivery pending, or the reverse.
        applied = DeliveryMark(
            delivery.id,
            DeliveryStatus.APPLIED,
            now,
            job_id=job.id,
            provider_job_id=update.provider_job_id,
        )
        if (
            update.status is not UpdateStatus.RUNNING
            and job.provider in parts.config.verify_callbacks
            and job.state is JobState.SUBMITTED
        ):
            # The callback is unsigned: treat it as a hint and ask the provider's
            # authenticated status endpoint now, instead of trusting its body.
            checked = await parts.store.update_job(
                job, Changes(next_check_at=now), now=now, mark=applied
            )
            written = checked is not None
            parts.wake()
        else:
            try:
                done = await apply_update(
                    parts.store,
                    job,
                    update,
                    cause=cause or f"callback:{delivery.id}",
                    now=now,
                    mark=applied,
                    router=parts.router,
                )
            except ProviderJobIdTaken as exc:
                # Nothing was written: the job stays as it was, the delivery is kept.
                await self._mark(
                    delivery,
                    DeliveryStatus.DEAD,
                    job_id=job.id,
                    provider_job_id=update.provider_job_id,
                    error=exc.message,
                )
                return DeliveryStatus.DEAD
            written = done.changed
        if written:
            self._processed(delivery, applied)
        else:
            # It changed nothing (a duplicate or late signal): applying it again
            # after a crash changes nothing either, so the mark may come alone.
            await self._mark(
                delivery,
                DeliveryStatus.APPLIED,
                job_id=job.id,
                provider_job_id=update.provider_job_id,
            )
        return DeliveryStatus.APPLIED

    async def _mark(
        self,
        delivery: Delivery,
        status: DeliveryStatus,
        *,
        job_id: str | None = None,
        provider_job_id: str | None = None,
        error: str | None = None,
    ) -> None:
        mark = DeliveryMark(
            delivery.id, status, self.parts.clock.now(), job_id, provider_job_id, error
        )
        await self.parts.store.mark_delivery(
            mark.delivery_id,
            mark.status,
            now=mark.at,
            job_id=mark.job_id,
            provider_job_id=mark.provider_job_id,
            error=mark.error,
        )
        self._processed(delivery, mark)

    def _processed(self, delivery: Delivery, mark: DeliveryMark) -> None:
        """Count and log a delivery's outcome, once it is written."""
        if mark.status is not DeliveryStatus.PENDING:
            self.parts.metrics.callbacks_outcome.labels(delivery.provider, mark.status.value).inc()
        log.info(
            "callback.processed",
            extra={
                "provider": delivery.provider,
                "job_id": mark.job_id,
                "action": mark.status.value,
                "delivery_id": delivery.id,
                "error": mark.error,
            },
        )


def _earlier_attempt(job: Job, provider_job_id: str | None) -> bool:
    """Whether ``provider_job_id`` is that of one of the job's ended attempts."""
    if provider_job_id is None or provider_job_id == job.provider_job_id:
        return False
    return any(a.provider_job_id == provider_job_id for a in job.past_attempts)
