"""Answer rules shared by the synchronous adapters (Photio, Artnex).

A synchronous provider does the work inside the one POST and takes no
idempotency key, so an answer that may come after the work (and the charge) is
final, never retried automatically (providers.md sections 3 and 4).
"""

from __future__ import annotations

import hashlib
from typing import Final

from schemas.errors import ProviderError, ProviderRejected, ProviderUnavailable, ProviderUncertain
from schemas.jobs import FailureReason

BILLED: Final = "the call may have been billed"


def result_invalid(message: str) -> ProviderRejected:
    """A 2xx answer whose result cannot be used: final, as the call was answered."""
    return ProviderRejected(f"{message}; {BILLED}", FailureReason.RESULT_INVALID)


def server_trouble(provider: str, status_code: int, msg: str) -> ProviderError | None:
    """The error for a 408, 503 or gateway 5xx; ``None`` for any other status.

    408 and 503 are ``ProviderUnavailable`` (the service took nothing: retry); any
    other 5xx but 500 is ``ProviderUncertain`` (a gateway gave up on an origin that
    may have done the work). A 500 is the provider's own answer: each adapter
    words it, and neither retries it.
    """
    where = f"HTTP {status_code}"
    if status_code in (408, 503):
        return ProviderUnavailable(f"{provider} is not taking requests ({where}): {msg}")
    if 500 < status_code <= 599:
        return ProviderUncertain(
            f"{provider}'s gateway answered {where} ({msg}); the image may have been made "
            f"and {BILLED}"
        )
    return None


def answer_id(provider: str, submit_id: str, body: bytes) -> str:
    """A job id for an answer that names none: ``{provider}-`` and 24 hex digits of the
    hash of our job id and the answer.

    Unique per submit, never per answer alone: the same input twice (or two inputs
    with the same output) gets the same answer, and each job must keep its own id.
    """
    digest = hashlib.sha256(submit_id.encode() + b"\0" + body).hexdigest()
    return f"{provider}-{digest[:24]}"
