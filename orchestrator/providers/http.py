"""HTTP plumbing shared by provider adapters: one capped, deadline-bound exchange.

Nothing here knows a provider; adapters pass their own wording. :class:`JsonApi`
sends JSON to one provider's API and translates ``httpx`` errors at the boundary:
:data:`NOT_SENT` (the request never left: safe to resend) and
:data:`TRANSPORT_ERRORS` (everything else that can go wrong on the wire).
:func:`parse_retry_after` and :func:`answered` are the answer rules every adapter
shares.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

from schemas.errors import ProviderError, ProviderRejected, ProviderUnavailable, ProviderUncertain
from schemas.jobs import FailureReason

# Raised before any byte of the request could reach the provider: safe to resend.
NOT_SENT: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.InvalidURL,
)

# Every error an exchange can raise (``TimeoutError`` is the overall deadline).
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx.HTTPError,
    httpx.StreamError,
    httpx.InvalidURL,
    TimeoutError,
)

DEFAULT_RETRY_AFTER_S = 60.0
MAX_RETRY_AFTER_S = 3600.0


@dataclass(frozen=True, slots=True)
class Answer:
    """A provider's answer, the body read up to a cap."""

    status_code: int
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code <= 299


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header value by case-insensitive name (works on plain dicts too)."""
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def path_segment(value: str) -> str:
    """``value`` quoted so it stays one path segment (``.``/``..`` included)."""
    if value and set(value) <= {"."}:  # dot segments would be removed
        return value.replace(".", "%2E")
    return quote(value, safe="")


def http_base_url(url: str, name: str = "base_url") -> str:
    """``url`` without its trailing slashes; ``ValueError`` unless it is http(s)."""
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"{name} must be an http(s) URL")
    return url.rstrip("/")


def _http_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_retry_after(
    headers: Mapping[str, str],
    *,
    now: datetime | None = None,
    missing: float = DEFAULT_RETRY_AFTER_S,
) -> float:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date.

    An HTTP-date is measured from the answer's own ``Date`` header when it has one
    (no clock skew), else from ``now``. A missing or blank header gives ``missing``,
    an unreadable value :data:`DEFAULT_RETRY_AFTER_S`; a read value is clamped to
    ``[0, MAX_RETRY_AFTER_S]``.
    """
    value = (header(headers, "Retry-After") or "").strip()
    if not value:
        return missing
    seconds: float | None = None
    if len(value) <= 20 and value.replace(".", "", 1).isdigit() and value.isascii():
        seconds = float(value)
    else:
        when = _http_date(value)
        server_now = _http_date(header(headers, "Date") or "")
        reference = server_now or now
        if when is not None and reference is not None:
            seconds = (when - reference).total_seconds()
    if seconds is None or not math.isfinite(seconds):
        return DEFAULT_RETRY_AFTER_S
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def answered(provider: str, status_code: int, msg: str) -> ProviderError:
    """The error for an HTTP status no provider rule claimed.

    408 and 5xx are ``ProviderUnavailable`` (try again); anything else is
    ``ProviderRejected(provider_failed)``.
    """
    text = f"{provider} answered HTTP {status_code}: {msg}"
    if status_code == 408 or 500 <= status_code <= 599:
        return ProviderUnavailable(text)
    return ProviderRejected(text, FailureReason.PROVIDER_FAILED)


async def exchange(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    content: bytes | None,
    timeout_s: float,
    max_bytes: int,
) -> Answer:
    """One request, its answer's body read up to ``max_bytes``, within ``timeout_s``.

    Waiting for a pooled connection and connecting get a quarter of the budget each
    (at most 10 s), so they fail as ``PoolTimeout``/``ConnectTimeout`` (nothing sent)
    before the overall deadline, which covers everything else. Redirects are not
    followed. A body over the cap (declared or streamed) is cut and marked
    ``truncated``.
    """
    setup_s = min(10.0, timeout_s / 4)
    timeout = httpx.Timeout(timeout_s, connect=setup_s, pool=setup_s)
    async with asyncio.timeout(timeout_s):
        async with client.stream(
            method,
            url,
            content=content,
            headers=dict(headers),
            timeout=timeout,
            follow_redirects=False,
        ) as response:
            chunks: list[bytes] = []
            size = 0
            truncated = False
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                truncated = True
            else:
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        truncated = True
                        break
                    chunks.append(chunk)
            return Answer(response.status_code, response.headers, b"".join(chunks), truncated)


class JsonApi:
    """One provider's JSON API: where it is, its credentials, how much it may answer.

    ``label`` names the provider in error messages ("Upsampler", "the local
    provider"). The credentials never show in ``repr``.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        label: str,
        base_url: str,
        auth: Mapping[str, str],
        max_bytes: int,
    ) -> None:
        self.client = client
        self.label = label
        self.base_url = http_base_url(base_url)
        self.max_bytes = max_bytes
        self._auth = dict(auth)

    def __repr__(self) -> str:
        return f"JsonApi({self.label!r}, base_url={self.base_url!r})"

    async def send(
        self, method: str, path: str, body: Mapping[str, Any] | None, timeout_s: float
    ) -> Answer:
        """One exchange with ``path``; ``body`` is sent as compact JSON. Raises ``httpx`` errors."""
        headers = {**self._auth, "Accept": "application/json"}
        content: bytes | None = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            content = text.encode("utf-8")
        return await exchange(
            self.client,
            method,
            self.base_url + path,
            headers=headers,
            content=content,
            timeout_s=timeout_s,
            max_bytes=self.max_bytes,
        )

    async def submit(
        self,
        path: str,
        body: Mapping[str, Any],
        timeout_s: float,
        *,
        sent: str,
        not_sent: str,
        unknown: str,
        too_large: str | None = None,
    ) -> Answer:
        """POST ``body``, its failures translated to the project's errors.

        - nothing sent: ``ProviderUnavailable`` "could not reach {label} (Error); {not_sent}";
        - sent, no answer: ``ProviderUncertain``
          "no answer from {label} after sending the {sent} (Error); {unknown}";
        - a 2xx over the cap: ``ProviderUncertain`` ``too_large``, by default
          "{label}'s answer is larger than N bytes; {unknown}".
        """
        try:
            answer = await self.send("POST", path, body, timeout_s)
        except NOT_SENT as exc:
            raise ProviderUnavailable(
                f"could not reach {self.label} ({type(exc).__name__}); {not_sent}"
            ) from exc
        except TRANSPORT_ERRORS as exc:
            raise ProviderUncertain(
                f"no answer from {self.label} after sending the {sent} "
                f"({type(exc).__name__}); {unknown}"
            ) from exc
        if answer.truncated and answer.ok:
            raise ProviderUncertain(
                too_large
                or f"{self.label}'s answer is larger than {self.max_bytes} bytes; {unknown}"
            )
        return answer

    async def get(
        self, path: str, timeout_s: float, *, what: str, too_large: str | None = None
    ) -> Answer:
        """GET ``path``; any failure is ``ProviderUnavailable`` (asking again is harmless).

        "could not get {what} from {label} (Error)", or for a 2xx over the cap
        ``too_large``, by default "{label}'s answer ({what}) is larger than N bytes".
        """
        try:
            answer = await self.send("GET", path, None, timeout_s)
        except TRANSPORT_ERRORS as exc:
            raise ProviderUnavailable(
                f"could not get {what} from {self.label} ({type(exc).__name__})"
            ) from exc
        if answer.truncated and answer.ok:
            raise ProviderUnavailable(
                too_large or f"{self.label}'s answer ({what}) is larger than {self.max_bytes} bytes"
            )
        return answer
