"""Operator endpoints: the callback inbox, replay, inject, reconcile, stuck jobs, retry."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from orchestrator.core import operations
from orchestrator.store.protocol import Delivery, DeliveryStatus
from receiver.auth import require_token
from receiver.bodies import read_capped
from receiver.jobs import public_job
from receiver.json_bodies import read_object
from receiver.since import since_time
from schemas.errors import NotFound, RejectedInput
from schemas.fields import (
    only_fields,
    optional_bool,
    optional_choice,
    optional_text,
    query_flag,
    query_int,
)
from schemas.jobs import JobState

_DELIVERY_STATUSES = frozenset(s.value for s in DeliveryStatus)
_JOB_STATES = frozenset(s.value for s in JobState)


def _iso(value: Any) -> str:
    return str(value.isoformat().replace("+00:00", "Z"))


def public_delivery(d: Delivery, *, full: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": d.id,
        "provider": d.provider,
        "received_at": _iso(d.received_at),
        "source": d.source,
        "status": d.status.value,
        "job_id": d.job_id,
        "provider_job_id": d.provider_job_id,
        "error": d.error,
        "replays": d.replays,
    }
    if full:
        out["headers"] = d.headers
        try:
            out["body"] = d.body.decode("utf-8")
        except UnicodeDecodeError:
            out["body_base64"] = base64.b64encode(d.body).decode()
    return out


def _status(value: str | None) -> DeliveryStatus | None:
    if value is None:
        return None
    if value not in _DELIVERY_STATUSES:
        names = ", ".join(sorted(_DELIVERY_STATUSES))
        raise RejectedInput(f"status must be one of: {names}")
    return DeliveryStatus(value)


async def list_deliveries(request: Request) -> Response:
    runtime = require_token(request)
    q = request.query_params
    found = await runtime.store.list_deliveries(
        status=_status(q.get("status")),
        provider=q.get("provider"),
        since=since_time(runtime, q.get("since")),
        job_id=q.get("job_id"),
        limit=query_int(q, "limit", default=100, low=1, high=1000),
    )
    return JSONResponse({"deliveries": [public_delivery(d) for d in found]})


async def show_delivery(request: Request) -> Response:
    runtime = require_token(request)
    delivery = await runtime.store.get_delivery(request.path_params["delivery_id"])
    if delivery is None:
        raise NotFound("no such delivery")
    out = public_delivery(delivery, full=True)
    if delivery.job_id:
        history = await runtime.store.history(delivery.job_id)
        out["changed"] = [
            {
                "at": _iso(h.at),
                "from": h.from_state.value if h.from_state else None,
                "to": h.to_state.value,
                "event": h.event,
            }
            for h in history
            if h.cause.endswith(f":{delivery.id}")
        ]
    return JSONResponse(out)


async def replay_delivery(request: Request) -> Response:
    runtime = require_token(request)
    result = await operations.replay(runtime.orchestrator, request.path_params["delivery_id"])
    return JSONResponse(result.to_json())


_REPLAY_FIELDS = ("status", "since", "provider", "all")


async def replay_deliveries(request: Request) -> Response:
    """Bulk replay. A body with no filter would replay every dead delivery there is:
    it must say so with ``"all": true``."""
    runtime = require_token(request)
    payload = await read_object(request)
    only_fields(payload, _REPLAY_FIELDS)
    status = _status(optional_choice(payload, "status", _DELIVERY_STATUSES))
    since = optional_text(payload, "since")
    provider = optional_choice(payload, "provider", runtime.providers)
    everything = optional_bool(payload, "all")
    if status is None and since is None and provider is None and not everything:
        raise RejectedInput(
            "say which deliveries to replay (status, since, provider), "
            'or send "all": true to replay every dead delivery'
        )
    results = await operations.replay_many(
        runtime.orchestrator,
        status=status or DeliveryStatus.DEAD,
        since=since_time(runtime, since),
        provider=provider,
    )
    return JSONResponse({"replayed": [r.to_json() for r in results]})


async def inject(request: Request) -> Response:
    runtime = require_token(request)
    provider = request.path_params["provider"]
    body = await read_capped(request, runtime.settings.max_callback_bytes)
    job_id = optional_text(request.query_params, "job_id")
    delivery, status = await operations.inject(runtime.orchestrator, provider, body, job_id=job_id)
    return JSONResponse({"delivery": delivery.id, "status": status.value}, status_code=201)


async def reconcile_job(request: Request) -> Response:
    runtime = require_token(request)
    job = await runtime.store.get_job(request.path_params["job_id"])
    if job is None:
        raise NotFound("no such job")
    dry_run = query_flag(request.query_params, "dry_run")
    result = await operations.reconcile(runtime.orchestrator, job, dry_run=dry_run)
    return JSONResponse(result.to_json())


_RECONCILE_FIELDS = ("dry_run", "state", "stuck", "since", "all")


async def reconcile_many(request: Request) -> Response:
    """Bulk reconcile: stuck jobs, or jobs since a time or in a state; with no filter
    (every unfinished job) only with ``"all": true``."""
    runtime = require_token(request)
    payload = await read_object(request)
    only_fields(payload, _RECONCILE_FIELDS)
    dry_run = optional_bool(payload, "dry_run")
    state = optional_choice(payload, "state", _JOB_STATES)
    stuck_only = optional_bool(payload, "stuck")
    since = optional_text(payload, "since")
    created_after = since_time(runtime, since)
    if not (stuck_only or state or since or optional_bool(payload, "all")):
        raise RejectedInput(
            'say which jobs to reconcile (stuck, since, state), or send "all": true'
        )
    if stuck_only:
        jobs = await operations.stuck_jobs(
            runtime.orchestrator, older_than_s=runtime.settings.stuck_after_s
        )
    else:
        jobs = await runtime.store.list_jobs(
            state=JobState(state) if state else None,
            created_after=created_after,
            limit=1000,
        )
        jobs = [j for j in jobs if not j.state.terminal]
    run = operations.start_reconcile(
        runtime.orchestrator, jobs, dry_run=dry_run, spawn=runtime.spawn
    )

    async def progress() -> AsyncIterator[bytes]:
        # What was queued at once, then each job's result as it comes (the work
        # goes on if the caller stops listening).
        yield _line({"dry_run": dry_run, "queued": run.job_ids})
        done = 0
        async for result in run.results():
            done += 1
            yield _line({"result": result.to_json()})
        yield _line({"done": done})

    return StreamingResponse(progress(), status_code=202, media_type="application/x-ndjson")


def _line(item: dict[str, Any]) -> bytes:
    return json.dumps(item).encode() + b"\n"


async def stuck(request: Request) -> Response:
    runtime = require_token(request)
    jobs = await operations.stuck_jobs(
        runtime.orchestrator, older_than_s=runtime.settings.stuck_after_s
    )
    return JSONResponse(
        {
            "stuck_after_s": runtime.settings.stuck_after_s,
            "jobs": [public_job(runtime, j) for j in jobs],
        }
    )


async def retry_job(request: Request) -> Response:
    runtime = require_token(request)
    job = await runtime.store.get_job(request.path_params["job_id"])
    if job is None:
        raise NotFound("no such job")
    payload = await read_object(request)
    only_fields(payload, ("confirm_uncertain",))
    new = await operations.retry(
        runtime.orchestrator, job, confirm_uncertain=optional_bool(payload, "confirm_uncertain")
    )
    return JSONResponse(public_job(runtime, new), status_code=202)
