"""Result hosting for the sandbox providers.

Each minted URL gets its own random token. A token can be marked expired
(answers 410) or corrupt (answers random non-image bytes with the real media
type) when it is minted; tokens also expire ``ttl_s`` after minting, by the
injected clock.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from orchestrator.sandbox.stats import Stats

logger = logging.getLogger(__name__)

# Starts with bytes no image format Pillow knows accepts as a signature.
_CORRUPT_PREFIX = b"CORRUPT!"


@dataclass(frozen=True, slots=True)
class HostedResult:
    provider: str
    data: bytes = field(repr=False)
    media_type: str
    extension: str
    expires_at: float
    expired: bool = False
    corrupt: bool = False


class ResultStore:
    def __init__(
        self,
        *,
        clock: Callable[[], float],
        rng: random.Random,
        stats: Stats,
        ttl_s: float = 3 * 3600.0,
    ) -> None:
        self._clock = clock
        self._rng = rng
        self._stats = stats
        self.ttl_s = ttl_s
        self._entries: dict[str, HostedResult] = {}

    def mint(
        self,
        provider: str,
        data: bytes,
        *,
        media_type: str,
        extension: str,
        expired: bool = False,
        corrupt: bool = False,
    ) -> str:
        """Store a new URL for ``data`` and return its token."""
        now = self._clock()
        self._prune(now)
        token = f"{self._rng.getrandbits(128):032x}"
        self._entries[token] = HostedResult(
            provider=provider,
            data=data,
            media_type=media_type,
            extension=extension,
            expires_at=now + self.ttl_s,
            expired=expired,
            corrupt=corrupt,
        )
        return token

    def lookup(self, token: str) -> HostedResult | None:
        return self._entries.get(token)

    def __len__(self) -> int:
        return len(self._entries)

    def routes(self, provider: str) -> list[BaseRoute]:
        """Routes serving ``/{token}.{extension}`` for one provider's results."""

        async def serve(request: Request) -> Response:
            return self._serve(provider, request.path_params["filename"])

        return [Route("/{filename}", serve, methods=["GET"])]

    def _serve(self, provider: str, filename: str) -> Response:
        token, _, extension = filename.partition(".")
        entry = self._entries.get(token)
        if entry is None or entry.provider != provider or entry.extension != extension:
            return JSONResponse({"error": "result not found"}, status_code=404)
        if entry.expired or self._clock() >= entry.expires_at:
            self._stats.bump(provider, "results_expired")
            return JSONResponse({"error": "result URL has expired"}, status_code=410)
        self._stats.bump(provider, "results_served")
        if entry.corrupt:
            self._stats.bump(provider, "results_corrupt")
            size = max(64, min(len(entry.data), 4096))
            junk = _CORRUPT_PREFIX + self._rng.randbytes(size)
            return Response(junk, media_type=entry.media_type)
        return Response(entry.data, media_type=entry.media_type)

    def _prune(self, now: float) -> None:
        # Entries are in minting order, so the oldest come first. Keep expired
        # tokens for one more TTL so they still answer 410 rather than 404.
        stale: list[str] = []
        for token, entry in self._entries.items():
            if entry.expires_at + self.ttl_s >= now:
                break
            stale.append(token)
        for token in stale:
            del self._entries[token]
