"""The inputs of a local submit (the image; a replace's mask too): decoded from base64
or downloaded, under a byte cap.

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
_MASK_UNREACHABLE: Final = "the mask URL could not be fetched"


async def input_bytes(client: httpx.AsyncClient, submission: Submission, limits: Limits) -> bytes:
    """The submitted image's bytes, at most ``max_input_bytes``; :class:`Refused` otherwise."""
    if submission.image_base64 is not None:
        return _decode(submission.image_base64, "image_base64", limits, "input image")
    if submission.image_url is None:
        raise Refused(400, "invalid_request", "send exactly one of image_url, image_base64")
    return await _download(client, submission.image_url, limits, "input image", _UNREACHABLE)


async def mask_bytes(client: httpx.AsyncClient, submission: Submission, limits: Limits) -> bytes:
    """A replace's mask bytes, at most ``max_input_bytes``; :class:`Refused` otherwise."""
    if submission.mask_base64 is not None:
        return _decode(submission.mask_base64, "mask_base64", limits, "mask")
    if submission.mask_url is None:
        raise Refused(
            400, "invalid_request", "a replace needs exactly one of mask_url, mask_base64"
        )
    return await _download(client, submission.mask_url, limits, "mask", _MASK_UNREACHABLE)


def _decode(text: str, field: str, limits: Limits, what: str) -> bytes:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Refused(400, "invalid_request", f"{field} is not valid base64") from exc
    if len(data) > limits.max_input_bytes:
        raise Refused(400, "input_too_large", limits.too_many_bytes(what))
    return data


async def _download(
    client: httpx.AsyncClient, url: str, limits: Limits, what: str, unreachable: str
) -> bytes:
    try:
        async with client.stream(
            "GET", url, timeout=limits.download_timeout_s, follow_redirects=True
        ) as response:
            if response.status_code != 200:
                # What the address answered stays here: it may be an internal one.
                logger.info("local input download answered HTTP %d", response.status_code)
                raise Refused(400, "input_unreachable", unreachable)
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limits.max_input_bytes:
                    raise Refused(400, "input_too_large", limits.too_many_bytes(what))
                chunks.append(chunk)
    except ForbiddenURL:
        logger.info("local input download refused: the address is not allowed")
        raise Refused(400, "input_unreachable", unreachable) from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        logger.info("local input download failed: %s", type(exc).__name__)
        raise Refused(400, "input_unreachable", unreachable) from None
    return b"".join(chunks)
