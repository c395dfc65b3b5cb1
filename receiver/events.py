"""The event feed: pull by cursor, stream as Server-Sent Events, redeliver."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from orchestrator.domain.events import EVENT_TYPES, event_seq
from orchestrator.outbound.feed import cursor, follow_events_or_idle
from orchestrator.store.outbox import EventRecord
from receiver.auth import require_token
from receiver.json_bodies import read_object
from schemas.errors import NotFound, RejectedInput
from schemas.fields import only_fields, optional_text, query_int


def _types(request: Request) -> list[str] | None:
    raw = [t for value in request.query_params.getlist("type") for t in value.split(",")]
    types = [t.strip() for t in raw if t.strip()]
    unknown = sorted(set(types) - set(EVENT_TYPES))
    if unknown:
        raise RejectedInput(f"unknown event types: {', '.join(unknown)}")
    return types or None


def public_event(event: EventRecord) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(event.body)
    return {"id": event.id, **body}


async def list_events(request: Request) -> Response:
    runtime = require_token(request)
    limit = query_int(request.query_params, "limit", default=100, low=1, high=1000)
    after = cursor(request.query_params.get("after"))
    events = await runtime.store.list_events(after=after, limit=limit, types=_types(request))
    next_cursor = events[-1].id if events else request.query_params.get("after")
    return JSONResponse({"events": [public_event(e) for e in events], "next": next_cursor})


async def get_event(request: Request) -> Response:
    runtime = require_token(request)
    seq = event_seq(request.path_params["event_id"])
    event = await runtime.store.get_event(seq) if seq is not None else None
    if event is None:
        raise NotFound("no such event")
    return JSONResponse(public_event(event))


async def stream_events(request: Request) -> Response:
    runtime = require_token(request)
    after = request.headers.get("last-event-id") or request.query_params.get("after")
    cursor(after)  # reject a bad cursor with a 400 before the stream starts
    types = _types(request)
    heartbeat = runtime.settings.sse_heartbeat_s

    async def body() -> AsyncIterator[str]:
        yield "retry: 2000\n: connected\n\n"
        async for event in follow_events_or_idle(
            runtime.store, after=after, types=types, poll_s=heartbeat
        ):
            if event is None:
                yield ": heartbeat\n\n"
            else:
                yield f"id: {event.id}\nevent: {event.type}\ndata: {event.body}\n\n"

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def redeliver(request: Request) -> Response:
    runtime = require_token(request)
    seq = event_seq(request.path_params["event_id"])
    if seq is None or await runtime.store.get_event(seq) is None:
        raise NotFound("no such event")
    payload = await read_object(request)
    only_fields(payload, ("subscription_id",))
    subscription_id = optional_text(payload, "subscription_id")
    if (
        subscription_id is not None
        and await runtime.store.get_subscription(subscription_id) is None
    ):
        raise NotFound("no such subscription")
    queued = await runtime.store.redeliver(
        seq, now=runtime.orchestrator.clock.now(), subscription_id=subscription_id
    )
    return JSONResponse(
        {"event_id": request.path_params["event_id"], "queued": queued}, status_code=202
    )
