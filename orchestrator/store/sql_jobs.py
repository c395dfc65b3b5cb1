"""The job verbs of the SQL store, written once for SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from orchestrator.domain.events import Snapshot, envelope, event_type, failover_events
from orchestrator.domain.states import Event, has_due_work
from orchestrator.store import job_queries as q
from orchestrator.store.connector import Connector, Row, Tx
from orchestrator.store.inbox_queries import MARK_DELIVERY, mark_params
from orchestrator.store.protocol import Changes, DeliveryMark, HistoryEntry, NewJob
from orchestrator.store.rows import (
    column_values,
    dt,
    provider_job_id_taken,
    req_dt,
    request_hash,
    row_to_job,
)
from schemas.errors import IdempotencyConflict, StoreUnavailable
from schemas.jobs import Job, JobState, Operation


def spend_day(now: datetime) -> str:
    """The UTC day spend is counted in."""
    return now.astimezone(UTC).date().isoformat()


def _returned(row: Row | None, what: str) -> Row:
    """The row a ``RETURNING`` statement must give back."""
    if row is None:
        raise StoreUnavailable(f"database write failed: {what} returned no row")
    return row


def in_due_order(rows: list[Row], now: datetime) -> list[Job]:
    """Leased jobs, the most overdue first."""
    return sorted((row_to_job(r) for r in rows), key=lambda j: j.next_check_at or now)


class SqlJobs(Connector):
    """Jobs, their history, and the event each transition writes in its transaction."""

    _snapshot: Snapshot

    async def _emit(self, tx: Tx, from_state: JobState | None, job: Job, now: datetime) -> None:
        """Write the event of a transition (if it is one) inside its transaction,
        and one outbound delivery per subscription that wants it."""
        kind = event_type(from_state, job.state)
        if kind is None:
            return
        await self._write_event(tx, kind, job, now, {})

    async def _write_event(
        self, tx: Tx, kind: str, job: Job, now: datetime, extra: dict[str, Any]
    ) -> None:
        body = envelope(kind, now, {**self._snapshot(job), **extra})
        ts = now.timestamp()
        await self._lock_events(tx)
        row = _returned(
            await tx.fetch_one(q.INSERT_EVENT, (kind, job.id, ts, body)), "event insert"
        )
        await tx.execute(q.fan_out(self.dialect), (row[0], job.id, ts, ts, job.id, kind))
        await self._announce(tx)

    async def create_job(self, new: NewJob) -> tuple[Job, bool]:
        digest = new.request_hash or request_hash(new)
        if new.idempotency_key is not None:
            existing = await self._one(q.JOB_BY_KEY, (new.idempotency_key,))
            if existing is not None:
                if existing["request_hash"] != digest:
                    raise IdempotencyConflict(
                        "this Idempotency-Key was used with a different request"
                    )
                return row_to_job(existing), False
        now = new.created_at.timestamp()
        try:
            async with self._transaction() as tx:
                row = await tx.fetch_one(
                    q.INSERT_JOB,
                    (
                        new.id,
                        new.provider,
                        new.scale,
                        json.dumps(new.options),
                        json.dumps(new.metadata),
                        new.input_url,
                        new.input_key,
                        new.idempotency_key,
                        digest,
                        now,
                        now,
                        new.deadline_at.timestamp(),
                        now,
                        new.retry_of,
                        new.operation.value,
                        new.prompt,
                        new.mask_url,
                        new.mask_key,
                        new.input_width,
                        new.input_height,
                        json.dumps(list(new.route)) if new.route else None,
                        new.route_name,
                        json.dumps(new.route_options) if new.route_options else None,
                        new.max_cost,
                        now,
                    ),
                )
                created = row_to_job(_returned(row, "job insert"))
                await tx.execute(q.INSERT_CREATED, (new.id, now))
                await self._emit(tx, None, created, new.created_at)
        except Exception as exc:
            # Two requests with the same key raced; the other one won.
            if new.idempotency_key is None or self._conflict(exc) != "idempotency_key":
                raise
            return await self.create_job(new)
        return created, True

    async def get_job(self, job_id: str) -> Job | None:
        row = await self._one(q.JOB_BY_ID, (job_id,))
        return None if row is None else row_to_job(row)

    async def find_job(self, provider: str, provider_job_id: str) -> Job | None:
        row = await self._one(q.JOB_BY_PROVIDER_ID, (provider, provider_job_id))
        return None if row is None else row_to_job(row)

    async def list_jobs(
        self,
        *,
        state: JobState | None = None,
        provider: str | None = None,
        after: str | None = None,
        limit: int = 50,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        operation: Operation | None = None,
        text: str | None = None,
    ) -> list[Job]:
        clause, params = q.where(
            [
                ("state = ?", state.value if state is not None else None),
                ("provider = ?", provider),
                ("operation = ?", operation.value if operation is not None else None),
                ("id < ?", after),
                ("created_at >= ?", created_after.timestamp() if created_after else None),
                ("created_at < ?", created_before.timestamp() if created_before else None),
            ]
        )
        if text:
            condition, values = q.job_text(self.dialect, text)
            clause = f"{clause} AND {condition}" if clause else f"WHERE {condition}"
            params = [*params, *values]
        rows = await self._all(q.list_jobs(clause), (*params, limit))
        return [row_to_job(r) for r in rows]

    async def apply_transition(
        self,
        job: Job,
        event: Event,
        to_state: JobState,
        *,
        cause: str,
        changes: Changes | None = None,
        now: datetime,
        mark: DeliveryMark | None = None,
    ) -> Job | None:
        changes = changes or Changes()
        # The column rules of a transition: no due work, no next check; a lease
        # ends with the transition unless the changes keep one.
        values = column_values(changes)
        if not has_due_work(to_state):
            values["next_check_at"] = None
        values["state"] = to_state.value
        values["updated_at"] = now.timestamp()
        values.setdefault("lease_until", None)
        detail = json.dumps(changes.detail) if changes.detail else None
        async with self._transaction() as tx:
            try:
                row = await tx.fetch_one(
                    q.update_job(values), (*values.values(), job.id, job.version)
                )
            except Exception as exc:
                if self._conflict(exc) != "provider_job_id":
                    raise
                raise provider_job_id_taken(job, changes) from exc
            if row is None:
                return None
            await tx.execute(
                q.INSERT_HISTORY,
                (
                    job.id,
                    now.timestamp(),
                    job.state.value,
                    to_state.value,
                    event.value,
                    cause,
                    detail,
                ),
            )
            done = row_to_job(row)
            if event is Event.FAIL_OVER:
                for kind, extra in failover_events(job, done):
                    await self._write_event(tx, kind, done, now, extra)
            else:
                await self._emit(tx, job.state, done, now)
            await self._count_spend(tx, job, done, now)
            if mark is not None:
                await tx.execute(MARK_DELIVERY, mark_params(mark))
        for listener in self.transition_listeners:
            listener(job, done, cause)
        return done

    async def _count_spend(self, tx: Tx, before: Job, after: Job, now: datetime) -> None:
        """An attempt that ended in this transition adds what it reported it cost to
        its provider's spend of the day: once, since the transition is."""
        if after.attempt != before.attempt and after.past_attempts:
            ended = after.past_attempts[-1]
            provider, cost = ended.provider, ended.cost
        elif after.state.terminal and not before.state.terminal:
            provider, cost = after.provider, after.cost
        else:
            return
        if cost is None:
            return
        await tx.execute(q.ADD_SPEND, (provider, spend_day(now), float(cost)))

    async def update_job(
        self, job: Job, changes: Changes, *, now: datetime, mark: DeliveryMark | None = None
    ) -> Job | None:
        values = column_values(changes)
        values["updated_at"] = now.timestamp()
        values["lease_until"] = None
        async with self._transaction() as tx:
            row = await tx.fetch_one(q.update_job(values), (*values.values(), job.id, job.version))
            if row is None:
                return None
            if mark is not None:
                await tx.execute(MARK_DELIVERY, mark_params(mark))
        return row_to_job(row)

    async def next_due_at(self) -> datetime | None:
        # The earliest of: the first unleased job in due order, and the first lease
        # to run out.
        free = await self._one(q.next_free(self.dialect), q.DUE)
        held = await self._one(q.NEXT_HELD, q.DUE)
        times = [r[0] for r in (free, held) if r is not None and r[0] is not None]
        return dt(min(times)) if times else None

    async def interrupted_submissions(self, *, now: datetime) -> list[Job]:
        rows = await self._all(q.INTERRUPTED, (now.timestamp(),))
        return [row_to_job(r) for r in rows]

    async def lease_job(self, job: Job, *, now: datetime, lease_s: float) -> Job | None:
        """Hold one job (compare-and-set) for ``lease_s`` seconds."""
        async with self._transaction() as tx:
            row = await tx.fetch_one(q.LEASE_JOB, (now.timestamp() + lease_s, job.id, job.version))
        return None if row is None else row_to_job(row)

    async def clear_leases(self) -> None:
        """Single-process start-up only: with several processes, a lease may be live."""
        async with self._transaction() as tx:
            await tx.execute(q.CLEAR_JOB_LEASES)
            await tx.execute(q.CLEAR_OUTBOUND_LEASES)

    async def history(self, job_id: str) -> list[HistoryEntry]:
        rows = await self._all(q.HISTORY, (job_id,))
        return [
            HistoryEntry(
                at=req_dt(r["at"]),
                from_state=JobState(r["from_state"]) if r["from_state"] else None,
                to_state=JobState(r["to_state"]),
                event=r["event"],
                cause=r["cause"],
                detail=json.loads(r["detail"]) if r["detail"] else None,
            )
            for r in rows
        ]

    async def job_counts(self, *, since: datetime | None = None) -> dict[tuple[str, str], int]:
        if since is None:
            rows = await self._all(q.JOB_COUNTS)
        else:
            rows = await self._all(q.job_counts_since(self.dialect), (since.timestamp(),))
        return {(r["state"], r["provider"]): int(r["n"]) for r in rows}

    async def count_stuck(self, *, created_before: datetime) -> int:
        row = await self._one(q.COUNT_STUCK, (created_before.timestamp(),))
        return int(row[0]) if row is not None else 0

    async def submitting(self, provider: str) -> bool:
        return await self._one(q.SUBMITTING, (provider,)) is not None
