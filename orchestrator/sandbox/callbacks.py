"""Webhook delivery for the sandbox providers, with retries and callback faults."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from orchestrator.sandbox.faults import Faults
from orchestrator.sandbox.stats import Stats
from schemas.errors import ForbiddenURL

logger = logging.getLogger(__name__)


class CallbackSender:
    """POSTs a JSON payload to a webhook URL.

    One delivery makes up to ``attempts`` HTTP attempts, waiting
    ``backoff_s * 2**n`` between them, until the receiver answers 2xx.
    Faults: ``drop_callback`` (never send), ``delay_callback_s`` (wait first)
    and ``duplicate_callback`` (deliver the same body twice).
    """

    def __init__(
        self,
        *,
        client: Callable[[], httpx.AsyncClient],
        faults: Faults,
        stats: Stats,
        rng: random.Random,
        backoff_s: float = 0.5,
        attempts: int = 3,
        timeout_s: float = 10.0,
    ) -> None:
        self._client = client
        self._faults = faults
        self._stats = stats
        self._rng = rng
        self.backoff_s = backoff_s
        self.attempts = attempts
        self.timeout_s = timeout_s

    async def deliver(
        self,
        provider: str,
        url: str,
        payload: Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if self._faults.roll("drop_callback", self._rng):
            self._stats.bump(provider, "callbacks_dropped")
            logger.info("%s callback to %s dropped (fault)", provider, url)
            return
        copies = 2 if self._faults.roll("duplicate_callback", self._rng) else 1
        delay = self._faults.delay_callback_s
        if delay > 0:
            await asyncio.sleep(delay)
        body = json.dumps(payload, separators=(",", ":")).encode()
        all_headers = {"content-type": "application/json", **(headers or {})}
        for _ in range(copies):
            await self._send(provider, url, body, all_headers)

    async def _send(self, provider: str, url: str, body: bytes, headers: dict[str, str]) -> bool:
        for attempt in range(1, self.attempts + 1):
            self._stats.bump(provider, "callback_attempts")
            try:
                response = await self._client().post(
                    url, content=body, headers=headers, timeout=self.timeout_s
                )
            except ForbiddenURL:
                # The guarded client refused the address: retrying cannot help.
                self._stats.bump(provider, "callbacks_refused")
                logger.warning("%s callback refused: the address is not allowed", provider)
                break
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            else:
                if 200 <= response.status_code < 300:
                    self._stats.bump(provider, "callbacks_sent")
                    return True
                outcome = f"HTTP {response.status_code}"
            logger.info(
                "%s callback to %s attempt %d/%d failed: %s",
                provider,
                url,
                attempt,
                self.attempts,
                outcome,
            )
            if attempt < self.attempts:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
        self._stats.bump(provider, "callbacks_failed")
        logger.warning("%s callback to %s gave up after %d attempts", provider, url, self.attempts)
        return False
