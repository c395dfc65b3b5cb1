"""The overview: how the service is doing, at a glance, updated live."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from orchestrator.core import operations
from orchestrator.service.runtime import Runtime
from orchestrator.store.protocol import DeliveryStatus
from receiver.console.pages import render, render_fragment, runtime_of
from receiver.console.providers import Balances, balances_of, provider_rows
from schemas.jobs import JobState

STATES = tuple(s.value for s in JobState)
WINDOWS = (("last hour", 3600), ("last day", 86400))
SHOWN = 20
SUCCESS, FAILURE = JobState.SUCCEEDED.value, JobState.FAILED.value


def job_table(counts: dict[tuple[str, str], int], providers: list[str]) -> dict[str, Any]:
    """Rows per provider, a column per state, the totals, and the success rate
    (succeeded over succeeded + failed)."""
    rows = []
    for provider in providers:
        cells = [counts.get((state, provider), 0) for state in STATES]
        rows.append({"provider": provider, "cells": cells, "total": sum(cells)})
    totals = [sum(counts.get((s, p), 0) for p in providers) for s in STATES]
    done = totals[STATES.index(SUCCESS)] + totals[STATES.index(FAILURE)]
    rate = None if done == 0 else totals[STATES.index(SUCCESS)] / done
    return {"rows": rows, "totals": totals, "total": sum(totals), "success_rate": rate}


async def overview_values(runtime: Runtime, balances: Balances) -> dict[str, Any]:
    store = runtime.store
    providers = sorted(runtime.providers)
    now = runtime.orchestrator.clock.now()
    windows = []
    for label, seconds in WINDOWS:
        counts = await store.job_counts(since=now - timedelta(seconds=seconds))
        windows.append({"label": label, **job_table(counts, providers)})
    stuck_after = runtime.settings.stuck_after_s
    # The first few to show, and the counts: a provider outage can leave thousands.
    stuck = await operations.stuck_jobs(runtime.orchestrator, older_than_s=stuck_after, limit=SHOWN)
    uncertain = await store.list_jobs(state=JobState.UNCERTAIN, limit=SHOWN)
    subscriptions = [
        s
        for s in await store.list_subscriptions()
        if s.disabled_at is not None or s.consecutive_failures > 0
    ]
    return {
        "states": STATES,
        "windows": windows,
        "stuck": stuck,
        "stuck_count": await store.count_stuck(created_before=now - timedelta(seconds=stuck_after)),
        "stuck_after_s": stuck_after,
        "uncertain": uncertain,
        "uncertain_more": len(uncertain) >= SHOWN,
        "dead": await store.count_deliveries(DeliveryStatus.DEAD),
        "unmatched": await store.count_deliveries(DeliveryStatus.UNMATCHED),
        "subscriptions": subscriptions,
        "providers": await provider_rows(runtime, balances),
    }


async def overview(request: Request) -> Response:
    values = await overview_values(runtime_of(request), balances_of(request))
    return render(request, "overview.html", values, page="overview")


async def overview_live(request: Request) -> Response:
    values = await overview_values(runtime_of(request), balances_of(request))
    return render_fragment("overview_body.html", values)


routes: list[BaseRoute] = [
    Route("/", overview, methods=["GET"]),
    Route("/overview/live", overview_live, methods=["GET"]),
]
