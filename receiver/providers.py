"""Provider information for operators: which are live, their cool-downs and spend,
the named routes, and account balances."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from orchestrator.domain.cooldown import Health
from orchestrator.providers.base import HasBalance
from receiver.auth import require_token
from schemas.errors import NotFound, RejectedInput


async def list_providers(request: Request) -> Response:
    runtime = require_token(request)
    now = runtime.orchestrator.clock.now()
    health = await runtime.store.provider_health()
    spend = await runtime.store.spend_today(now=now)
    caps = runtime.orchestrator.config.spend_caps
    return JSONResponse(
        {
            "providers": [
                {
                    "name": name,
                    "mode": "sandbox" if name in runtime.sandboxed else "live",
                    "callbacks": provider.callback_mode,
                    "operations": sorted(o.value for o in provider.operations),
                    "health": _health(health.get(name) or Health(name), now),
                    "spend_today": {
                        "credits": spend[name].credits if name in spend else 0.0,
                        "attempts": spend[name].jobs if name in spend else 0,
                        "cap": caps.get(name),
                    },
                }
                for name, provider in sorted(runtime.providers.items())
            ]
            + [
                {"name": name, "mode": "unavailable", "reason": reason}
                for name, reason in sorted(runtime.unavailable.items())
            ],
            "routes": {
                name: list(providers)
                for name, providers in sorted(runtime.orchestrator.config.routes.items())
            },
        }
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _health(health: Health, now: datetime) -> dict[str, Any]:
    """A provider's cool-down state, as routed jobs see it."""
    return {
        "state": health.state(now).value,
        "failures_in_a_row": health.failures,
        "failures": health.total_failures,
        "cooldowns": health.cooldowns,
        "cooldown_s": health.cooldown_s,
        "cooling_until": _iso(health.until),
        "probe_job": health.probe_job,
    }


async def provider_balance(request: Request) -> Response:
    runtime = require_token(request)
    name = request.path_params["provider"]
    provider = runtime.providers.get(name)
    if provider is None:
        raise NotFound("no such provider")
    if not isinstance(provider, HasBalance):
        raise RejectedInput(f"{name} has no balance endpoint")
    return JSONResponse({"provider": name, **await provider.balance()})
