"""Bearer-token check for the jobs API."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from orchestrator.service.runtime import Runtime
from schemas.errors import NotAuthorized


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def require_token(request: Request) -> Runtime:
    runtime = runtime_of(request)
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value:
        raise NotAuthorized("send Authorization: Bearer <token>")
    presented = value.strip().encode()
    if not any(hmac.compare_digest(presented, t.reveal().encode()) for t in runtime.api_tokens):
        raise NotAuthorized("unknown API token")
    return runtime
