"""``POST /callbacks/{provider}/{token}``: the hot path.

Cap the body, verify the token (no database yet), store the raw delivery and
commit, then answer. Parsing, matching and applying happen off the request path.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver.auth import runtime_of
from receiver.bodies import read_capped
from schemas.errors import CallbackSourceRefused, NotFound, StoreUnavailable

_KEPT_HEADERS = ("content-type", "user-agent", "x-forwarded-for", "x-request-id")


async def receive_callback(request: Request) -> Response:
    runtime = runtime_of(request)
    provider = request.path_params["provider"]
    if provider not in runtime.providers:
        raise NotFound("unknown provider")
    claims = runtime.callback_signer.verify(provider, request.path_params["token"])
    peer = request.client.host if request.client is not None else None
    if not runtime.sources.allows(provider, peer, request.headers.get("x-forwarded-for")):
        raise CallbackSourceRefused(f"callback for {provider} from a source not on its list")
    body = await read_capped(request, runtime.settings.max_callback_bytes)
    headers = {k: v for k, v in request.headers.items() if k in _KEPT_HEADERS}
    if peer is not None:
        headers["x-peer-address"] = peer
    try:
        delivery = await runtime.orchestrator.receive(claims, headers, body)
    except StoreUnavailable:
        # Not stored: make the provider try again rather than lose the event.
        return JSONResponse(
            {"error": {"code": "store_unavailable", "message": "try again"}},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return JSONResponse({"received": True, "delivery": delivery.id})
