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
from schemas.jobs import JobState

STATES = tuple(s.value for s in JobState)
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


async def overview_values(runtime: Runtime) -> dict[str, Any]:
    store = runtime.store
    providers = sorted(runtime.providers)
    counts = await store.job_counts()
    stuck_after = runtime.settings.stuck_after_s
    # The first few to show, and the count: a provider outage can leave thousands.
    stuck = await operations.stuck_jobs(runtime.orchestrator, older_than_s=stuck_after, limit=20)
    since = runtime.orchestrator.clock.now() - timedelta(seconds=stuck_after)
    uncertain = await store.list_jobs(state=JobState.UNCERTAIN, limit=20)
    return {
        "states": STATES,
        "all_time": job_table(counts, providers),
        "stuck": stuck,
        "stuck_count": await store.count_stuck(created_before=since),
        "uncertain": uncertain,
        "dead": await store.count_deliveries(DeliveryStatus.DEAD),
        "unmatched": await store.count_deliveries(DeliveryStatus.UNMATCHED),
    }


async def overview(request: Request) -> Response:
    values = await overview_values(runtime_of(request))
    return render(request, "overview.html", values, page="overview")


async def overview_live(request: Request) -> Response:
    return render_fragment("overview_body.html", await overview_values(runtime_of(request)))


routes: list[BaseRoute] = [
    Route("/", overview, methods=["GET"]),
    Route("/overview/live", overview_live, methods=["GET"]),
]
