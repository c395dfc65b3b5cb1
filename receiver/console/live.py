"""The console's live feed: the event stream as Server-Sent Events, behind the session.

It is the JSON API's stream (``/v1/events/stream``) for signed-in pages: the same
store feed (``follow_events_or_idle``), starting from now (or ``Last-Event-ID``
after a reconnect), each event reduced to what a page needs to know that
something changed: its id, type, job and the job's state.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from orchestrator.domain.events import event_id, event_seq
from orchestrator.outbound.feed import follow_events_or_idle
from orchestrator.store.outbox import EventRecord
from receiver.console.pages import runtime_of


def _summary(event: EventRecord) -> str:
    state = None
    try:
        data = json.loads(event.body).get("data")
        if isinstance(data, dict):
            state = data.get("state")
    except (ValueError, AttributeError):
        pass
    return json.dumps(
        {
            "id": event.id,
            "type": event.type,
            "job_id": event.job_id,
            "state": state,
            "at": event.created_at.isoformat().replace("+00:00", "Z"),
        }
    )


async def live(request: Request) -> Response:
    runtime = runtime_of(request)
    resume = request.headers.get("last-event-id")
    if resume is None or event_seq(resume) is None:
        resume = event_id(await runtime.store.last_event_seq())
    heartbeat = runtime.settings.sse_heartbeat_s

    async def body() -> AsyncIterator[str]:
        yield "retry: 2000\n: connected\n\n"
        async for event in follow_events_or_idle(runtime.store, after=resume, poll_s=heartbeat):
            if event is None:
                yield ": heartbeat\n\n"
            else:
                yield f"id: {event.id}\ndata: {_summary(event)}\n\n"

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


routes: list[BaseRoute] = [Route("/live", live, methods=["GET"])]
