"""Provider information for operators: which are live, and account balances."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from orchestrator.providers.base import HasBalance
from receiver.auth import require_token
from schemas.errors import NotFound, RejectedInput


async def list_providers(request: Request) -> Response:
    runtime = require_token(request)
    return JSONResponse(
        {
            "providers": [
                {
                    "name": name,
                    "mode": "sandbox" if name in runtime.sandboxed else "live",
                    "callbacks": provider.callback_mode,
                    "operations": sorted(o.value for o in provider.operations),
                }
                for name, provider in sorted(runtime.providers.items())
            ]
            + [
                {"name": name, "mode": "unavailable", "reason": reason}
                for name, reason in sorted(runtime.unavailable.items())
            ]
        }
    )


async def provider_balance(request: Request) -> Response:
    runtime = require_token(request)
    name = request.path_params["provider"]
    provider = runtime.providers.get(name)
    if provider is None:
        raise NotFound("no such provider")
    if not isinstance(provider, HasBalance):
        raise RejectedInput(f"{name} has no balance endpoint")
    return JSONResponse({"provider": name, **await provider.balance()})
