"""``POST /callbacks/{provider}/{token}``: the hot path.

Cap the body, verify the token (no database yet), store the raw delivery and
commit, then answer. Parsing, matching and applying happen off the request path.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver.auth import runtime_of
from receiver.bodies import read_capped
from schemas.errors import CallbackSourceRefused, NotFound, StoreUnavailable, UpscaleError

_KEPT_HEADERS = frozenset((b"content-type", b"user-agent", b"x-forwarded-for", b"x-request-id"))


async def receive_callback(request: Request) -> Response:
    runtime = runtime_of(request)
    rejected = runtime.metrics.callbacks_rejected
    provider = request.path_params["provider"]
    try:
        if provider not in runtime.providers:
            raise NotFound("unknown provider")
        claims = runtime.callback_signer.verify(provider, request.path_params["token"])
    except NotFound:
        rejected.labels("bad_token").inc()
        raise
    peer = request.client.host if request.client is not None else None
    if not runtime.sources.allows(provider, peer, request.headers.get("x-forwarded-for")):
        rejected.labels("source").inc()
        raise CallbackSourceRefused(f"callback for {provider} from a source not on its list")
    try:
        body = await read_capped(request, runtime.settings.max_callback_bytes)
    except UpscaleError:
        rejected.labels("too_large").inc()
        raise
    # From the raw header list: decoding only the few kept is measurably cheaper.
    headers = {
        k.decode("latin-1"): v.decode("latin-1")
        for k, v in request.scope["headers"]
        if k in _KEPT_HEADERS
    }
    if peer is not None:
        headers["x-peer-address"] = peer
    try:
        delivery = await runtime.orchestrator.receive(claims, headers, body)
    except StoreUnavailable:
        rejected.labels("store_unavailable").inc()
        # Not stored: make the provider try again rather than lose the event.
        return JSONResponse(
            {"error": {"code": "store_unavailable", "message": "try again"}},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    # Ids are [a-z0-9_]: the answer is formatted directly rather than JSON-encoded.
    return Response(
        b'{"received":true,"delivery":"%s"}' % delivery.id.encode("ascii"),
        media_type="application/json",
    )
