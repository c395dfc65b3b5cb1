"""Outbound webhook subscriptions."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from orchestrator.common.durations import MAX_DURATION_S, bounded_seconds
from orchestrator.common.ids import new_id
from orchestrator.outbound.subscriptions import new_subscription, public_subscription, rotated
from orchestrator.service.runtime import Runtime
from orchestrator.store.outbox import OutboundStatus, Subscription
from receiver.auth import require_token
from receiver.intake import check_webhook_url
from receiver.json_bodies import read_object
from schemas.errors import NotFound, RejectedInput
from schemas.fields import only_fields, optional_choice


async def _get(runtime: Runtime, subscription_id: str) -> Subscription:
    sub = await runtime.store.get_subscription(subscription_id)
    if sub is None:
        raise NotFound("no such subscription")
    return sub


async def create(request: Request) -> Response:
    runtime = require_token(request)
    payload = await read_object(request)
    only_fields(payload, ("url", "types"))
    now = runtime.orchestrator.clock.now()
    if isinstance(payload.get("url"), str):
        # Refused now, with the reason, rather than retried for hours against an
        # address the dispatcher will never connect to.
        await check_webhook_url(runtime, payload["url"])
    sub = new_subscription(new_id("sub", now), payload.get("url"), payload.get("types"), now=now)
    await runtime.store.create_subscription(sub)
    return JSONResponse(public_subscription(sub, with_secret=True), status_code=201)


async def list_all(request: Request) -> Response:
    runtime = require_token(request)
    subs = await runtime.store.list_subscriptions()
    return JSONResponse({"subscriptions": [public_subscription(s) for s in subs]})


async def show(request: Request) -> Response:
    runtime = require_token(request)
    sub = await _get(runtime, request.path_params["subscription_id"])
    return JSONResponse(public_subscription(sub))


async def delete(request: Request) -> Response:
    runtime = require_token(request)
    removed = await runtime.store.delete_subscription(
        request.path_params["subscription_id"], now=runtime.orchestrator.clock.now()
    )
    if not removed:
        raise NotFound("no such subscription")
    return Response(status_code=204)


async def rotate_secret(request: Request) -> Response:
    runtime = require_token(request)
    sub = await _get(runtime, request.path_params["subscription_id"])
    payload = await read_object(request)
    only_fields(payload, ("grace_s",))
    try:
        grace = bounded_seconds(payload.get("grace_s", runtime.settings.secret_grace_s))
    except ValueError as exc:
        raise RejectedInput(
            f"grace_s must be a number of seconds from 0 to {MAX_DURATION_S:.0f}: {exc}"
        ) from exc
    fresh, _ = rotated(sub, now=runtime.orchestrator.clock.now(), grace_s=grace)
    await runtime.store.set_subscription_secrets(sub.id, fresh.secrets)
    return JSONResponse(public_subscription(fresh, with_secret=True))


async def enable(request: Request) -> Response:
    runtime = require_token(request)
    sub = await _get(runtime, request.path_params["subscription_id"])
    await runtime.store.enable_subscription(sub.id)
    return JSONResponse(public_subscription(await _get(runtime, sub.id)))


async def deliveries(request: Request) -> Response:
    runtime = require_token(request)
    sub = await _get(runtime, request.path_params["subscription_id"])
    status = optional_choice(
        request.query_params, "status", frozenset(s.value for s in OutboundStatus)
    )
    records = await runtime.store.list_outbound(
        subscription_id=sub.id, status=OutboundStatus(status) if status else None, limit=200
    )
    out = []
    for r in records:
        attempts = await runtime.store.attempts(r.id)
        out.append(
            {
                "id": r.id,
                "event_id": r.event_id,
                "event_type": r.event_type,
                "job_id": r.job_id,
                "status": r.status.value,
                "attempts": [
                    {
                        "at": a.at.isoformat().replace("+00:00", "Z"),
                        "status_code": a.status_code,
                        "error": a.error,
                        "duration_ms": round(a.duration_ms, 1),
                    }
                    for a in attempts
                ],
                "next_attempt_at": r.next_attempt_at.isoformat().replace("+00:00", "Z")
                if r.next_attempt_at
                else None,
            }
        )
    return JSONResponse({"subscription_id": sub.id, "deliveries": out})
