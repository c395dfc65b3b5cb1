"""Who may use the sandbox's control routes (faults, stats, the Fotor account webhook).

They change what every job sees and reveal signed callback URLs, so wherever the
sandbox listens they need the service's API token, sent as ``Authorization:
Bearer <token>``. ``None`` for the tokens leaves them open: only for a sandbox
built inside a test process, never for one behind a listener (``upscale serve``
and ``upscale sandbox`` always pass tokens).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


def control_allowed(request: Request, tokens: Sequence[str] | None) -> bool:
    """True when ``request`` carries one of ``tokens`` (or no tokens are required)."""
    if tokens is None:
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        return False
    # Compare with every token so the time taken does not tell which one is close.
    matches = [hmac.compare_digest(given.encode(), token.encode()) for token in tokens if token]
    return any(matches)


def control_denied(request: Request, tokens: Sequence[str] | None) -> Response | None:
    """A 401 answer unless ``request`` may use a control route."""
    if control_allowed(request, tokens):
        return None
    return JSONResponse(
        {"error": "the sandbox's control routes need Authorization: Bearer <API token>"},
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )
