"""The input image of a local submit: decoded from base64 or downloaded, under a byte cap.

The download goes through the server's client (the guarded one unless a test
gives its own). What the address answered is logged, never put in the answer:
it may be an internal one.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Final

import httpx

from orchestrator.local.limits import Limits
from orchestrator.local.submissions import Refused, Submission
from schemas.errors import ForbiddenURL

# The local server's log: operators filter on this name.
logger = logging.getLogger("orchestrator.local.server")

# Never what the address answered (it may be an internal one): see the log for that.
_UNREACHABLE: Final = "the image URL could not be fetched"


async def input_bytes(client: httpx.AsyncClient, submission: Submission, limits: Limits) -> bytes:
    """The submitted image's bytes, at most ``max_input_bytes``; :class:`Refused` otherwise."""
    if submission.image_base64 is not None:
        try:
            data = base64.b64decode(submission.image_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Refused(400, "invalid_request", "image_base64 is not valid base64") from exc
        if len(data) > limits.max_input_bytes:
            raise Refused(400, "input_too_large", limits.too_many_bytes())
        return data
    if submission.image_url is None:
        raise Refused(400, "invalid_request", "send exactly one of image_url, image_base64")
    return await _download(client, submission.image_url, limits)


async def _download(client: httpx.AsyncClient, url: str, limits: Limits) -> bytes:
    try:
        async with client.stream(
            "GET", url, timeout=limits.download_timeout_s, follow_redirects=True
        ) as response:
            if response.status_code != 200:
                # What the address answered stays here: it may be an internal one.
                logger.info("local input download answered HTTP %d", response.status_code)
                raise Refused(400, "input_unreachable", _UNREACHABLE)
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limits.max_input_bytes:
                    raise Refused(400, "input_too_large", limits.too_many_bytes())
                chunks.append(chunk)
    except ForbiddenURL:
        logger.info("local input download refused: the address is not allowed")
        raise Refused(400, "input_unreachable", _UNREACHABLE) from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        logger.info("local input download failed: %s", type(exc).__name__)
        raise Refused(400, "input_unreachable", _UNREACHABLE) from None
    return b"".join(chunks)
