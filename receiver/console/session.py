"""Console sessions: a signed cookie naming which API token signed in, never the token.

The cookie holds ``{"tid": <token fingerprint>, "csrf": <random>}``, signed and
time-stamped with itsdangerous under a key derived from the service's signing
keys (every key is tried, the newest signs, so rotating the keys keeps sessions
for as long as the old key is configured). The fingerprint is an HMAC of the
token; each request recomputes the fingerprints of the configured tokens and
compares in constant time, so removing a token ends every session it opened.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer

from orchestrator.common.settings import Secret

COOKIE = "upscale_console"
COOKIE_PATH = "/console"
MAX_AGE_S = 12 * 3600
_SALT = "upscale-console-session"


@dataclass(frozen=True, slots=True)
class Session:
    token_id: str
    csrf: str


def _derive(key: Secret, purpose: bytes) -> str:
    return hmac.new(key.reveal().encode(), purpose, hashlib.sha256).hexdigest()


class Sessions:
    """Opens, reads and checks console sessions against the configured API tokens."""

    def __init__(
        self,
        signing_keys: tuple[Secret, ...],
        api_tokens: tuple[Secret, ...],
        *,
        secure: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not signing_keys:
            raise ValueError("the console needs at least one signing key")
        # itsdangerous signs with the last key and accepts any of them; its timestamps
        # (issued, and the age checked against MAX_AGE_S) come from ``clock``.
        keys = [_derive(k, b"console-session") for k in signing_keys]

        class Signer(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(clock())

        self._serializer = URLSafeTimedSerializer(keys, salt=_SALT, signer=Signer)
        # The newest key fingerprints new sessions; any configured key's fingerprint counts.
        self._fingerprint_keys = [_derive(k, b"console-token-id").encode() for k in signing_keys]
        self._tokens = api_tokens
        self.secure = secure

    def fingerprint(self, token: str, key: bytes | None = None) -> str:
        key = self._fingerprint_keys[-1] if key is None else key
        return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()[:32]

    def sign_in(self, presented: str) -> str | None:
        """The cookie value for a session of ``presented``, or None when it is no API token."""
        candidate = presented.strip().encode()
        known = any(hmac.compare_digest(candidate, t.reveal().encode()) for t in self._tokens)
        if not candidate or not known:
            return None
        session = {"tid": self.fingerprint(presented.strip()), "csrf": secrets.token_urlsafe(32)}
        return self._serializer.dumps(session)

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie carries: signed by us, not expired, and its token still
        configured; None otherwise."""
        if not cookie or len(cookie) > 4096:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=MAX_AGE_S)
        except BadSignature:
            return None
        if not isinstance(data, dict):
            return None
        token_id, csrf = data.get("tid"), data.get("csrf")
        if not isinstance(token_id, str) or not isinstance(csrf, str):
            return None
        keys = self._fingerprint_keys
        current = [self.fingerprint(t.reveal(), key) for t in self._tokens for key in keys]
        if not any(hmac.compare_digest(token_id.encode(), c.encode()) for c in current):
            return None
        return Session(token_id=token_id, csrf=csrf)

    def csrf_ok(self, session: Session, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(
            session.csrf.encode(), (presented or "").encode()
        )

    def cookie_header(self, value: str) -> str:
        return self._cookie(value, MAX_AGE_S)

    def cleared_cookie_header(self) -> str:
        return self._cookie("", 0)

    def _cookie(self, value: str, max_age: int) -> str:
        parts = [
            f"{COOKIE}={value}",
            f"Path={COOKIE_PATH}",
            f"Max-Age={max_age}",
            "HttpOnly",
            "SameSite=Strict",
        ]
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)
