"""Rows in and out of the database: one mapping for both stores, whose tables
have the same columns (sqlite3.Row and asyncpg records alike)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii as _quote
from typing import Any, Protocol

from orchestrator.common.settings import Secret
from orchestrator.store.outbox import EventRecord, SigningSecret, Subscription
from orchestrator.store.protocol import (
    CallbackMatch,
    Changes,
    Delivery,
    DeliveryStatus,
    NewDelivery,
    NewJob,
)
from schemas.errors import ProviderJobIdTaken, StoreUnavailable
from schemas.jobs import Attempt, Failure, Job, JobState, Operation, ResultInfo


class Row(Protocol):
    """A row whose columns are read by name."""

    def __getitem__(self, key: str, /) -> Any: ...


def dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def req_dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def row_to_job(row: Row) -> Job:
    failure = None
    if row["failure_reason"] is not None:
        failure = Failure(row["failure_reason"], row["failure_message"] or "")
    result = None
    if row["result"] is not None:
        result = ResultInfo(**json.loads(row["result"]))
    return Job(
        id=row["id"],
        provider=row["provider"],
        state=JobState(row["state"]),
        version=row["version"],
        scale=row["scale"],
        options=json.loads(row["options"]),
        metadata=json.loads(row["metadata"]) if row["metadata"] is not None else None,
        input_url=row["input_url"],
        input_key=row["input_key"],
        provider_job_id=row["provider_job_id"],
        result_url=row["result_url"],
        failure=failure,
        result=result,
        cost=row["cost"],
        attempts=row["attempts"],
        refetches=row["refetches"],
        created_at=req_dt(row["created_at"]),
        updated_at=req_dt(row["updated_at"]),
        deadline_at=req_dt(row["deadline_at"]),
        next_check_at=dt(row["next_check_at"]),
        idempotency_key=row["idempotency_key"],
        retry_of=row["retry_of"],
        operation=Operation(row["operation"]),
        prompt=row["prompt"],
        mask_url=row["mask_url"],
        mask_key=row["mask_key"],
        input_width=row["input_width"],
        input_height=row["input_height"],
        route=tuple(json.loads(row["route"])) if row["route"] else (),
        route_name=row["route_name"],
        route_options=json.loads(row["route_options"]) if row["route_options"] else {},
        max_cost=row["max_cost"],
        attempt=row["attempt"],
        attempt_started_at=dt(row["attempt_started_at"]),
        past_attempts=tuple(Attempt.from_json(a) for a in json.loads(row["past_attempts"] or "[]")),
    )


def row_to_delivery(row: Row) -> Delivery:
    return Delivery(
        id=row["id"],
        provider=row["provider"],
        claimed_job_id=row["claimed_job_id"],
        received_at=req_dt(row["received_at"]),
        headers=json.loads(row["headers"]),
        body=bytes(row["body"]),
        source=row["source"],
        status=DeliveryStatus(row["status"]),
        job_id=row["job_id"],
        provider_job_id=row["provider_job_id"],
        error=row["error"],
        replays=row["replays"],
    )


def row_to_match(row: Row | None) -> CallbackMatch:
    """A callback match from the one row of ``MATCH_CALLBACK`` (job columns NULL
    when no job holds the id)."""
    if row is None:
        raise StoreUnavailable("database read failed: the match statement read no row")
    job = row_to_job(row) if row["id"] is not None else None
    return CallbackMatch(job, bool(row["submit_in_flight"]))


def row_to_event(row: Row, prefix: str = "") -> EventRecord:
    return EventRecord(
        seq=row[f"{prefix}seq"],
        type=row[f"{prefix}type"],
        job_id=row[f"{prefix}job_id"],
        created_at=req_dt(row[f"{prefix}created_at"]),
        body=row[f"{prefix}body"],
    )


def row_to_subscription(row: Row) -> Subscription:
    secrets = tuple(
        SigningSecret(Secret(item["secret"]), dt(item["expires_at"]))
        for item in json.loads(row["secrets"])
    )
    types = json.loads(row["types"]) if row["types"] is not None else None
    return Subscription(
        id=row["id"],
        url=row["url"],
        types=tuple(types) if types is not None else None,
        job_id=row["job_id"],
        secrets=secrets,
        created_at=req_dt(row["created_at"]),
        disabled_at=dt(row["disabled_at"]),
        disabled_reason=row["disabled_reason"],
        consecutive_failures=row["consecutive_failures"],
    )


# writing ---------------------------------------------------------------------


def ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def request_hash(new: NewJob) -> str:
    hashed: list[Any] = [
        new.provider,
        new.scale,
        new.options,
        new.metadata,
        new.input_url,
        new.input_key,
    ]
    if new.operation is not Operation.UPSCALE:
        # Only for other operations, so the digests of upscale jobs stay the same.
        hashed.append({"operation": new.operation.value, "prompt": new.prompt})
        hashed.append({"mask_url": new.mask_url, "mask_key": new.mask_key})
    blob = json.dumps(hashed, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def column_values(changes: Changes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in changes.items().items():
        if name == "failure":
            out["failure_reason"] = value.reason if value else None
            out["failure_message"] = value.message if value else None
        elif name == "result":
            out["result"] = json.dumps(result_json(value)) if value else None
        elif name in ("next_check_at", "lease_until", "attempt_started_at"):
            out[name] = ts(value)
        elif name == "options":
            out[name] = json.dumps(value)
        elif name == "past_attempts":
            out[name] = json.dumps([a.to_json() for a in value])
        else:
            out[name] = value
    return out


def provider_job_id_taken(job: Job, changes: Changes) -> ProviderJobIdTaken:
    """The error for a transition that would give ``job`` a provider job id another
    job holds (both stores raise it from their unique index)."""
    pjid = changes.items().get("provider_job_id")
    return ProviderJobIdTaken(
        f"job {job.id}: another {job.provider} job already holds provider job id {pjid!r}"
    )


def result_json(result: ResultInfo) -> dict[str, Any]:
    return {
        "key": result.key,
        "content_type": result.content_type,
        "bytes": result.bytes,
        "sha256": result.sha256,
        "width": result.width,
        "height": result.height,
        "format": result.format,
    }


def secrets_json(secrets: Sequence[SigningSecret]) -> str:
    return json.dumps(
        [
            {
                "secret": s.secret.reveal(),
                "expires_at": s.expires_at.timestamp() if s.expires_at else None,
            }
            for s in secrets
        ]
    )


# The append-only table of callbacks as acknowledged (``received``), in the order of
# ``received_values``; a new delivery's row adds its status and job (``delivery_values``).
RECEIVED_COLUMNS = "id, provider, claimed_job_id, received_at, headers, body, dedupe_key, source"
DELIVERY_COLUMNS = RECEIVED_COLUMNS + ", status, job_id"


def delivery_values(new: NewDelivery, status: DeliveryStatus) -> tuple[Any, ...]:
    """A new delivery's row: its row as acknowledged, then its status and its job (the
    claimed one until matched)."""
    return (*received_values(new), status.value, new.claimed_job_id)


def headers_json(headers: dict[str, str]) -> str:
    """``json.dumps`` of a delivery's headers (text to text), at a third of its cost:
    it is made once per callback."""
    return "{" + ",".join([f"{_quote(k)}:{_quote(v)}" for k, v in headers.items()]) + "}"


def received_values(new: NewDelivery) -> tuple[Any, ...]:
    """A callback's row in ``received``, as acknowledged."""
    return (
        new.id,
        new.provider,
        new.claimed_job_id,
        new.received_at.timestamp(),
        headers_json(new.headers),
        new.body,
        new.dedupe_key,
        new.source,
    )


def row_to_received(row: Row) -> NewDelivery:
    return NewDelivery(
        id=row["id"],
        provider=row["provider"],
        claimed_job_id=row["claimed_job_id"],
        received_at=req_dt(row["received_at"]),
        headers=json.loads(row["headers"]),
        body=bytes(row["body"]),
        dedupe_key=row["dedupe_key"],
        source=row["source"],
    )
