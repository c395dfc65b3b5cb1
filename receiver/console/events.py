"""The event feed: the latest events, newest first, then live ones as they are written
(``static/console.js`` appends what ``/console/live`` streams); an event's page with
its body and where it was delivered, and a redelivery to every subscription.

Read through the store's outbox verbs, as the JSON API's ``/v1/events`` routes are.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from orchestrator.domain.events import EVENT_TYPES, event_seq
from orchestrator.service.runtime import Runtime
from orchestrator.store.outbox import EventRecord
from receiver.console.inbox import choice
from receiver.console.pages import BASE, render, runtime_of
from schemas.errors import NotFound

SHOWN = 100
# How far back to read for a filtered page: events of one type may be sparse.
LOOK_BACK = 5000


async def _latest(runtime: Runtime, event_type: str | None) -> list[EventRecord]:
    """The latest events (of one type), newest first: one index read from a point
    just behind the end of the feed (events are numbered in commit order)."""
    last = await runtime.store.last_event_seq()
    back = SHOWN if event_type is None else LOOK_BACK
    after = max(0, last - back)
    types = [event_type] if event_type else None
    found = await runtime.store.list_events(after=after, limit=back, types=types)
    return list(reversed(found[-SHOWN:]))


async def list_events(request: Request) -> Response:
    runtime = runtime_of(request)
    event_type = choice(request.query_params, "type", EVENT_TYPES)
    values = {
        "events": await _latest(runtime, event_type),
        "types": EVENT_TYPES,
        "chosen_type": event_type,
        "shown": SHOWN,
    }
    return render(request, "events.html", values, page="events")


async def _event(runtime: Runtime, raw: str) -> EventRecord:
    seq = event_seq(raw) if len(raw) <= 64 else None
    event = await runtime.store.get_event(seq) if seq is not None else None
    if event is None:
        raise NotFound("no such event")
    return event


async def show_event(request: Request) -> Response:
    runtime = runtime_of(request)
    event = await _event(runtime, request.path_params["event_id"])
    try:
        body = json.dumps(json.loads(event.body), indent=2, sort_keys=True)
    except ValueError:
        body = event.body
    outbound = await runtime.store.list_outbound(event_seq=event.seq, limit=100)
    queued = request.query_params.get("queued")
    values = {
        "event": event,
        "body": body,
        "outbound": outbound,
        "queued": int(queued) if queued and queued.isdigit() and len(queued) < 6 else None,
    }
    return render(request, "event.html", values, page="events")


async def redeliver(request: Request) -> Response:
    """The event again to every subscription it went to."""
    runtime = runtime_of(request)
    event = await _event(runtime, request.path_params["event_id"])
    queued = await runtime.store.redeliver(event.seq, now=runtime.orchestrator.clock.now())
    return RedirectResponse(f"{BASE}/events/{event.id}?queued={queued}", status_code=303)


routes: list[BaseRoute] = [
    Route("/events", list_events, methods=["GET"]),
    Route("/events/{event_id}", show_event, methods=["GET"]),
    Route("/events/{event_id}/redeliver", redeliver, methods=["POST"]),
]
