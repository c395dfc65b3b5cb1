"""The inbox: callback deliveries filtered by status, provider and time (keyset pages);
a delivery's page (headers, the raw body pretty-printed, what it matched and changed,
its error); replay one; replay every dead one since a time, the count shown first.

Reads and acts through the store's verbs and ``core/operations``, as the JSON API's
``/v1/deliveries`` routes do.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from orchestrator.core import operations
from orchestrator.service.runtime import Runtime
from orchestrator.store.protocol import Delivery, DeliveryStatus
from receiver.console.bodies import show_body
from receiver.console.jobs import cause_link
from receiver.console.pages import BASE, render, render_fragment, runtime_of
from receiver.since import since_time
from schemas.errors import NotFound, RejectedInput
from schemas.fields import optional_choice, query_int

STATUSES = tuple(s.value for s in DeliveryStatus)
SINCE_CHOICES = (("", "any time"), ("1h", "last hour"), ("24h", "last day"), ("7d", "last week"))
REPLAY_SINCE = (("1h", "the last hour"), ("24h", "the last day"), ("7d", "the last week"))
# What one bulk replay takes at most (as ``operations.replay_many``); the rest wait
# for the next run.
REPLAY_LIMIT = 1000
_FILTERS = ("status", "provider", "since", "limit")


def choice(params: Any, name: str, choices: Collection[str]) -> str | None:
    """A filter from a form's select: empty is "any" (None); else one of ``choices``."""
    if not params.get(name):
        return None
    return optional_choice(params, name, choices)


def _query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{k}={quote(str(v), safe='')}" for k, v in pairs)


async def inbox_values(runtime: Runtime, params: Any) -> dict[str, Any]:
    status = choice(params, "status", STATUSES)
    provider = choice(params, "provider", sorted(runtime.providers))
    since = params.get("since") or ""
    limit = query_int(params, "limit", default=50, low=1, high=200)
    after = params.get("after") or None
    if after is not None and len(after) > 64:
        raise RejectedInput("after: not a delivery id")
    found = await runtime.store.list_deliveries(
        status=DeliveryStatus(status) if status else None,
        provider=provider,
        since=since_time(runtime, since),
        after=after,
        limit=limit + 1,
    )
    more = len(found) > limit
    found = found[:limit]
    keep = [(k, v) for k, v in params.items() if k in _FILTERS and v]
    return {
        "deliveries": found,
        "filters": {"status": status, "provider": provider, "since": since},
        "next_query": _query([*keep, ("after", found[-1].id)]) if more and found else None,
        "first_page": after is not None,
        "first_query": _query(keep),
        "statuses": STATUSES,
        "providers": sorted(runtime.providers),
        "since_choices": SINCE_CHOICES,
        "replay_since": REPLAY_SINCE,
    }


async def list_inbox(request: Request) -> Response:
    runtime = runtime_of(request)
    values = await inbox_values(runtime, request.query_params)
    query = str(request.url.query)
    values["live_url"] = f"{BASE}/inbox/live" + (f"?{query}" if query else "")
    return render(request, "inbox.html", values, page="inbox")


async def list_inbox_live(request: Request) -> Response:
    values = await inbox_values(runtime_of(request), request.query_params)
    return render_fragment("inbox_table.html", {**values, "base": BASE})


async def _delivery(runtime: Runtime, delivery_id: str) -> Delivery:
    if len(delivery_id) > 64:
        raise NotFound("no such delivery")
    delivery = await runtime.store.get_delivery(delivery_id)
    if delivery is None:
        raise NotFound("no such delivery")
    return delivery


async def show_delivery(request: Request) -> Response:
    runtime = runtime_of(request)
    delivery = await _delivery(runtime, request.path_params["delivery_id"])
    changed: list[dict[str, Any]] = []
    job = None
    if delivery.job_id:
        job = await runtime.store.get_job(delivery.job_id)
        # The transitions this delivery caused: live, replayed or injected.
        changed = [
            {"at": h.at, "from": h.from_state, "to": h.to_state, "event": h.event, "cause": h.cause}
            for h in await runtime.store.history(delivery.job_id)
            if h.cause.endswith(f":{delivery.id}") and cause_link(h.cause) is not None
        ]
    replayed = request.query_params.get("replayed")
    values = {
        "delivery": delivery,
        "job": job,
        "body": show_body(delivery.body, delivery.headers),
        "headers": sorted(delivery.headers.items()),
        "changed": changed,
        "can_replay": delivery.status is not DeliveryStatus.APPLIED,
        # A fixed note from a status name, never text from the URL itself.
        "replayed": DeliveryStatus(replayed).value if replayed in STATUSES else None,
    }
    return render(request, "delivery.html", values, page="inbox")


async def replay_one(request: Request) -> Response:
    runtime = runtime_of(request)
    delivery = await _delivery(runtime, request.path_params["delivery_id"])
    result = await operations.replay(runtime.orchestrator, delivery.id)
    return RedirectResponse(
        f"{BASE}/inbox/{delivery.id}?replayed={result.after.value}", status_code=303
    )


async def _replay_selection(runtime: Runtime, params: Any) -> tuple[str, str | None, int]:
    """What a bulk replay would take: (since, provider, how many dead deliveries match;
    one run replays ``REPLAY_LIMIT`` of them at most)."""
    since = params.get("since") or ""
    if since not in {value for value, _ in REPLAY_SINCE}:
        raise RejectedInput("since: choose the last hour, day or week")
    provider = choice(params, "provider", sorted(runtime.providers))
    total = await runtime.store.count_deliveries(
        DeliveryStatus.DEAD, since=since_time(runtime, since), provider=provider
    )
    return since, provider, total


async def replay_dead_confirm(request: Request) -> Response:
    """The confirmation step: how many dead deliveries would be replayed."""
    runtime = runtime_of(request)
    since, provider, total = await _replay_selection(runtime, request.query_params)
    sample = await runtime.store.list_deliveries(
        status=DeliveryStatus.DEAD, since=since_time(runtime, since), provider=provider, limit=10
    )
    values = {
        "since": since,
        "since_label": dict(REPLAY_SINCE)[since],
        "provider": provider,
        "count": min(total, REPLAY_LIMIT),
        "total": total,
        "sample": sample,
        "limit": REPLAY_LIMIT,
    }
    return render(request, "replay_confirm.html", values, page="inbox")


async def replay_dead(request: Request) -> Response:
    runtime = runtime_of(request)
    form = await request.form(max_files=0, max_fields=8)
    since, provider, _ = await _replay_selection(runtime, form)
    results = await operations.replay_many(
        runtime.orchestrator,
        status=DeliveryStatus.DEAD,
        since=since_time(runtime, since),
        provider=provider,
        limit=REPLAY_LIMIT,
    )
    outcome: dict[str, int] = {}
    for result in results:
        outcome[result.after.value] = outcome.get(result.after.value, 0) + 1
    values = {
        "since_label": dict(REPLAY_SINCE)[since],
        "provider": provider,
        "results": results,
        "outcome": sorted(outcome.items()),
    }
    return render(request, "replay_done.html", values, page="inbox")


routes: list[BaseRoute] = [
    Route("/inbox", list_inbox, methods=["GET"]),
    Route("/inbox/live", list_inbox_live, methods=["GET"]),
    Route("/inbox/replay", replay_dead_confirm, methods=["GET"]),
    Route("/inbox/replay", replay_dead, methods=["POST"]),
    Route("/inbox/{delivery_id}", show_delivery, methods=["GET"]),
    Route("/inbox/{delivery_id}/replay", replay_one, methods=["POST"]),
]
