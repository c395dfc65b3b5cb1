"""HTTP plumbing shared by provider adapters: one capped, deadline-bound exchange.

Adapters turn the :class:`Answer` into the project's types; nothing here knows a
provider. ``httpx`` errors are left to the caller to translate, split by
:data:`NOT_SENT` (the request never left: safe to resend) and :data:`TRANSPORT_ERRORS`
(everything else that can go wrong on the wire).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx

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
