"""Operator endpoints: the callback inbox, replay, inject, reconcile, stuck jobs, retry."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from orchestrator import operations
from orchestrator.durations import parse_duration
from orchestrator.runtime import Runtime
from orchestrator.store.protocol import Delivery, DeliveryStatus
from receiver.auth import require_token
from receiver.bodies import read_capped
from receiver.jobs import public_job
from schemas.errors import NotFound, RejectedInput
from schemas.jobs import JobState


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
    try:
        return DeliveryStatus(value)
    except ValueError:
        names = ", ".join(s.value for s in DeliveryStatus)
        raise RejectedInput(f"status must be one of: {names}") from None


def _since(runtime: Runtime, value: str | None) -> Any:
    if value is None or value == "":
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise RejectedInput(str(exc)) from None
    return runtime.orchestrator.clock.now() - timedelta(seconds=seconds)


async def _json(request: Request) -> dict[str, Any]:
    raw = await read_capped(request, 64 * 1024)
    if not raw.strip():
        return {}
    try:
        payload = json.loads(raw)
    except ValueError:
        raise RejectedInput("body must be JSON") from None
    if not isinstance(payload, dict):
        raise RejectedInput("body must be a JSON object")
    return payload


async def list_deliveries(request: Request) -> Response:
    runtime = require_token(request)
    q = request.query_params
    found = await runtime.store.list_deliveries(
        status=_status(q.get("status")),
        provider=q.get("provider"),
        since=_since(runtime, q.get("since")),
        job_id=q.get("job_id"),
        limit=max(
            1, min(int(q.get("limit", "100")) if q.get("limit", "").isdigit() else 100, 1000)
        ),
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


async def replay_deliveries(request: Request) -> Response:
    runtime = require_token(request)
    payload = await _json(request)
    status = _status(payload.get("status", "dead"))
    assert status is not None
    since = payload.get("since")
    if since is not None and not isinstance(since, str):
        raise RejectedInput("since must be a duration such as 24h")
    results = await operations.replay_many(
        runtime.orchestrator,
        status=status,
        since=_since(runtime, since),
        provider=payload.get("provider"),
    )
    return JSONResponse({"replayed": [r.to_json() for r in results]})


async def inject(request: Request) -> Response:
    runtime = require_token(request)
    provider = request.path_params["provider"]
    body = await read_capped(request, runtime.settings.max_callback_bytes)
    delivery, status = await operations.inject(
        runtime.orchestrator, provider, body, job_id=request.query_params.get("job_id")
    )
    return JSONResponse({"delivery": delivery.id, "status": status.value}, status_code=201)


async def reconcile_job(request: Request) -> Response:
    runtime = require_token(request)
    job = await runtime.store.get_job(request.path_params["job_id"])
    if job is None:
        raise NotFound("no such job")
    dry_run = request.query_params.get("dry_run", "").lower() in ("1", "true", "yes")
    result = await operations.reconcile(runtime.orchestrator, job, dry_run=dry_run)
    return JSONResponse(result.to_json())


async def reconcile_many(request: Request) -> Response:
    runtime = require_token(request)
    payload = await _json(request)
    dry_run = bool(payload.get("dry_run", False))
    state = payload.get("state")
    if state is not None and state not in {s.value for s in JobState}:
        raise RejectedInput(f"unknown state {state!r}")
    if payload.get("stuck"):
        jobs = await operations.stuck_jobs(
            runtime.orchestrator, older_than_s=runtime.settings.stuck_after_s
        )
    else:
        since = payload.get("since")
        if since is not None and not isinstance(since, str):
            raise RejectedInput("since must be a duration such as 2h")
        jobs = await runtime.store.list_jobs(
            state=JobState(state) if state else None,
            created_after=_since(runtime, since),
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
    payload = await _json(request)
    new = await operations.retry(
        runtime.orchestrator, job, confirm_uncertain=bool(payload.get("confirm_uncertain"))
    )
    return JSONResponse(public_job(runtime, new), status_code=202)
