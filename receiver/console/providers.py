"""Providers: live or sandboxed, what each offers, its budgets left, its balance, its
cool-down health and today's spend as routed jobs see them, and the named routes.

Balances are asked of the providers themselves (the same call as
``GET /v1/providers/{name}/balance``), at most every ``BALANCE_TTL_S`` seconds
per provider and with a time limit, so a live page never waits on a slow provider.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from orchestrator.domain.cooldown import Health
from orchestrator.providers.base import HasBalance
from orchestrator.service.runtime import Runtime
from receiver.console.pages import render, render_fragment, runtime_of
from schemas.errors import UpscaleError

BALANCE_TTL_S = 30.0
BALANCE_TIMEOUT_S = 3.0


@dataclass
class Balances:
    """The last balance each provider told, and when."""

    seen: dict[str, tuple[float, str]] = field(default_factory=dict)

    async def of(self, runtime: Runtime, name: str) -> str | None:
        provider = runtime.providers.get(name)
        if not isinstance(provider, HasBalance):
            return None
        now = time.monotonic()
        cached = self.seen.get(name)
        if cached is not None and now - cached[0] < BALANCE_TTL_S:
            return cached[1]
        try:
            answer = await asyncio.wait_for(provider.balance(), BALANCE_TIMEOUT_S)
            text = ", ".join(f"{k}: {v}" for k, v in sorted(answer.items())) or "-"
        except TimeoutError:
            text = "no answer in time"
        except UpscaleError as exc:
            text = f"unavailable ({exc})"
        self.seen[name] = (now, text)
        return text


def _period(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}" if count > 1 else unit
    return f"{seconds:g} s"


async def provider_rows(runtime: Runtime, balances: Balances) -> list[dict[str, Any]]:
    now = runtime.orchestrator.clock.now()
    health = await runtime.store.provider_health()
    spend = await runtime.store.spend_today(now=now)
    caps = runtime.orchestrator.config.spend_caps
    rows: list[dict[str, Any]] = []
    for name, provider in sorted(runtime.providers.items()):
        usage = await runtime.orchestrator.budgets.usage(name, now)
        state = health.get(name) or Health(name)
        rows.append(
            {
                "health": state.state(now).value,
                "cooling_until": state.until,
                "failures_in_a_row": state.failures,
                "spend": spend[name].credits if name in spend else 0.0,
                "spend_cap": caps.get(name),
                "name": name,
                "mode": "sandbox" if name in runtime.sandboxed else "live",
                "callbacks": provider.callback_mode,
                "operations": sorted(o.value for o in provider.operations),
                "budgets": [
                    {
                        "kind": u.kind,
                        "window": _period(u.period_s),
                        "used": u.used,
                        "limit": u.limit,
                        "left": u.left,
                        "share": min(1.0, u.used / u.limit) if u.limit else 0.0,
                    }
                    for u in usage
                ],
                "balance": await balances.of(runtime, name),
            }
        )
    for name, reason in sorted(runtime.unavailable.items()):
        rows.append(
            {
                "name": name,
                "mode": "unavailable",
                "reason": reason,
                "health": None,
                "callbacks": "-",
                "operations": [],
                "budgets": [],
                "balance": None,
            }
        )
    return rows


def balances_of(request: Request) -> Balances:
    balances: Balances = request.app.state.balances
    return balances


async def providers_page(request: Request) -> Response:
    runtime = runtime_of(request)
    rows = await provider_rows(runtime, balances_of(request))
    routes = sorted(runtime.orchestrator.config.routes.items())
    return render(
        request, "providers.html", {"providers": rows, "routes": routes}, page="providers"
    )


async def providers_live(request: Request) -> Response:
    rows = await provider_rows(runtime_of(request), balances_of(request))
    return render_fragment("providers_table.html", {"providers": rows})


routes: list[BaseRoute] = [
    Route("/providers", providers_page, methods=["GET"]),
    Route("/providers/live", providers_live, methods=["GET"]),
]
