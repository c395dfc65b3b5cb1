"""Signed, expiring tokens for callback URLs and input-image URLs.

Keys are a list, oldest to newest: tokens are signed with the newest and
verified against all, so a key can be rotated while callbacks are in flight.
Expiry is checked against an injected clock, never the wall clock directly.

A callback URL's token never changes, and a provider that retries or reports
progress presents it again and again; checking its signature each time is most
of the work of a callback. So each signer remembers the payloads of tokens it
has verified (a bounded number). Only successful verifications are remembered;
the expiry is still checked on every use; and the memory belongs to the signer,
which is built from the keys: new keys, new signer, nothing remembered. Tokens
whose signature failed are remembered too (a bounded number): a flood of one
bad URL costs a lookup a request, and the callback path answers it without
raising (``CallbackSigner.claims``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadData, URLSafeSerializer

from orchestrator.common.clock import Clock
from orchestrator.common.settings import Secret
from schemas.errors import NotFound


@dataclass(frozen=True, slots=True)
class CallbackClaims:
    provider: str
    job_id: str | None  # None for an account-wide token (one URL for all jobs)


# Verified tokens remembered per signer; when full, it starts again from empty.
VERIFIED_CACHE_SIZE = 8192


class _Signer:
    def __init__(self, keys: Sequence[Secret], clock: Clock, salt: str) -> None:
        if not keys:
            raise ValueError("at least one secret key is needed")
        self._serializer = URLSafeSerializer([k.reveal() for k in keys], salt=salt)
        self._clock = clock
        self._verified: dict[str, dict[str, Any]] = {}
        self._refused: set[str] = set()

    def _dump(self, payload: dict[str, Any]) -> str:
        return str(self._serializer.dumps(payload))

    def _load(self, token: str) -> dict[str, Any]:
        """Return the payload of a genuine, unexpired token; NotFound for anything else."""
        payload = self._payload(token)
        if payload is None:
            raise NotFound("unknown or expired token")
        return payload

    def _payload(self, token: str) -> dict[str, Any] | None:
        """The payload of a genuine, unexpired token, else None (nothing raised for a
        token seen before)."""
        payload = self._verified.get(token)
        if payload is None:
            if token in self._refused:
                return None
            try:
                payload = self._verify_signature(token)
            except NotFound:
                if len(self._refused) >= VERIFIED_CACHE_SIZE:
                    self._refused.clear()
                self._refused.add(token)
                return None
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.clear()
            self._verified[token] = payload
        expires = payload.get("e")
        if expires is not None and self._clock.now().timestamp() > expires:
            return None
        return payload

    def _verify_signature(self, token: str) -> dict[str, Any]:
        try:
            payload = self._serializer.loads(token)
        except (BadData, ValueError, TypeError, UnicodeError) as exc:
            raise NotFound("unknown token") from exc
        if not isinstance(payload, dict):
            raise NotFound("unknown token")
        expires = payload.get("e")
        if expires is not None and (
            not isinstance(expires, int | float) or isinstance(expires, bool)
        ):
            raise NotFound("unknown token")
        return payload


class CallbackSigner(_Signer):
    """Tokens for ``/callbacks/{provider}/{token}``."""

    def __init__(self, keys: Sequence[Secret], clock: Clock) -> None:
        super().__init__(keys, clock, salt="upscale.callback.v1")
        # The claims of tokens verified before, with their expiry: made once a token.
        self._claims: dict[tuple[str, str], tuple[CallbackClaims, float | None]] = {}

    def for_job(self, provider: str, job_id: str, expires_at: float) -> str:
        return self._dump({"p": provider, "j": job_id, "e": int(expires_at)})

    def for_account(self, provider: str) -> str:
        return self._dump({"p": provider})

    def verify(self, provider: str, token: str) -> CallbackClaims:
        claims = self.claims(provider, token)
        if claims is None:
            raise NotFound("unknown token")
        return claims

    def claims(self, provider: str, token: str) -> CallbackClaims | None:
        """The claims of a genuine, unexpired token for ``provider``; None otherwise."""
        known = self._claims.get((provider, token))
        if known is not None:
            claims, expires = known
            if expires is not None and self._clock.now().timestamp() > expires:
                return None
            return claims
        payload = self._payload(token)
        if payload is None or payload.get("p") != provider:
            return None
        job_id = payload.get("j")
        if job_id is not None and not isinstance(job_id, str):
            return None
        claims = CallbackClaims(provider=provider, job_id=job_id)
        if len(self._claims) >= VERIFIED_CACHE_SIZE:
            self._claims.clear()
        self._claims[(provider, token)] = (claims, payload.get("e"))
        return claims


class InputSigner(_Signer):
    """Tokens for ``/inputs/{token}``: lets a provider download an uploaded image."""

    def __init__(self, keys: Sequence[Secret], clock: Clock) -> None:
        super().__init__(keys, clock, salt="upscale.input.v1")

    def sign(self, key: str, expires_at: float) -> str:
        return self._dump({"k": key, "e": int(expires_at)})

    def verify(self, token: str) -> str:
        key = self._load(token).get("k")
        if not isinstance(key, str):
            raise NotFound("unknown token")
        return key
