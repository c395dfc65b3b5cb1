"""A local job's webhook: its payload POSTed until a 2xx, with exponential backoff.

A 4xx other than 408/429, or an address the guard refuses, stops the retries.
Webhook URLs are never logged: they carry signed tokens.
"""

from __future__ import annotations

import asyncio
import json
import logging

import httpx

from orchestrator.local.jobs import LocalJob
from orchestrator.local.limits import Limits
from schemas.errors import ForbiddenURL

# The local server's log: operators filter on this name.
logger = logging.getLogger("orchestrator.local.server")


async def deliver(client: httpx.AsyncClient, job: LocalJob, webhook: str, limits: Limits) -> None:
    """POST the job's payload to ``webhook`` until a 2xx, with exponential backoff."""
    body = json.dumps(job.payload(), separators=(",", ":")).encode()
    headers = {"content-type": "application/json"}
    attempts = limits.callback_attempts
    for attempt in range(1, attempts + 1):
        try:
            response = await client.post(
                webhook, content=body, headers=headers, timeout=limits.callback_timeout_s
            )
        except ForbiddenURL:
            outcome, final = "refused: the address is not allowed", True
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            outcome, final = type(exc).__name__, False
        else:
            if 200 <= response.status_code <= 299:
                logger.info("local job %s webhook delivered", job.id)
                return
            code = response.status_code
            outcome = f"HTTP {code}"
            final = 400 <= code <= 499 and code not in (408, 429)
        logger.info(
            "local job %s webhook attempt %d/%d failed: %s", job.id, attempt, attempts, outcome
        )
        if final:
            break
        if attempt < attempts:
            await asyncio.sleep(limits.callback_backoff_s * 2 ** (attempt - 1))
    logger.warning("local job %s webhook not delivered", job.id)
