"""Download a provider's result image, check it, and store it atomically.

``fetch`` streams the body into a temporary file next to the store (byte
cap, sha256 on the way, magic bytes from the first bytes), inspects the
image header with Pillow (:mod:`orchestrator.fetch.imagecheck`), then moves
the file into place under ``<key_stem>.<ext>``. ``store_bytes`` does the same
for results that arrive inline. Memory stays constant: the body passes in
blocks of ``WRITE_BLOCK`` bytes to a :class:`~orchestrator.fetch.spool.ResultSpool`,
which hashes, writes and (for a PNG) walks them behind the download.

Errors are the project's (:mod:`schemas.errors`):

* :class:`ForbiddenURL` - not http(s), or a hop resolves to a forbidden
  address (raised by the guarded transport); no retry;
* :class:`ResultExpired` - 403, 404 or 410;
* :class:`ResultInvalid` - other 4xx, a body over the cap, not an image, an
  image over the pixel limit, too many redirects;
* :class:`FetchTransient` - 5xx, 429, timeouts and connection errors, after
  ``retries`` more attempts with backoff; also a local write failure.

The temporary file is removed on every failure path, including cancellation.
URLs may carry signatures in their query string, so only hosts are logged
or put into messages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from PIL import Image

from orchestrator.fetch.imagecheck import SNIFF_BYTES, extension_for, inspect_image, sniff_format
from orchestrator.fetch.spool import WRITE_BLOCK, ResultSpool, in_thread
from orchestrator.results.storage import ResultStorage, validate_key
from orchestrator.security.private_files import make_private_dir
from schemas.errors import FetchTransient, ForbiddenURL, ResultExpired, ResultInvalid
from schemas.jobs import ResultInfo

__all__ = ["ResultFetcher"]

logger = logging.getLogger(__name__)

_ALLOWED_SCHEMES = frozenset({"http", "https"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_EXPIRED = frozenset({403, 404, 410})


class _Transient(Exception):
    """An attempt failed in a way worth another attempt (internal)."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ResultFetcher:
    """Downloads (or takes inline) result images, checks them and stores them."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        storage: ResultStorage,
        tmp_dir: Path,
        *,
        max_bytes: int,
        max_pixels: int,
        retries: int = 2,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        max_redirects: int = 5,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_bytes <= 0 or max_pixels <= 0 or retries < 0 or max_redirects < 0:
            raise ValueError("max_bytes and max_pixels must be positive, retries not negative")
        self._client = client
        self._storage = storage
        self._tmp_dir = tmp_dir
        self._max_bytes = max_bytes
        self._max_pixels = max_pixels
        self._retries = retries
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._max_redirects = max_redirects
        self._sleep = sleep
        self._clock = clock
        make_private_dir(tmp_dir)
        pillow_limit = Image.MAX_IMAGE_PIXELS
        if pillow_limit is not None and max_pixels > 2 * pillow_limit:
            logger.warning(
                "max_pixels=%d is above Pillow's decompression-bomb limit (%d): "
                "Pillow's limit applies to larger images",
                max_pixels,
                2 * pillow_limit,
            )

    async def fetch(
        self, url: str, key_stem: str, *, size: tuple[int, int] | None = None
    ) -> ResultInfo:
        """Download ``url`` and store it as ``<key_stem>.<ext>``; ``size`` is the
        width and height it must have, when the job asks for one (a replace)."""
        validate_key(f"{key_stem}.png")
        target = _http_url(url)
        started = self._clock()
        attempt = 0
        while True:
            try:
                info = await self._attempt(target, key_stem, size)
            except _Transient as exc:
                if attempt >= self._retries:
                    logger.warning(
                        "giving up on result from %s after %d attempts: %s",
                        target.host,
                        attempt + 1,
                        exc,
                    )
                    raise FetchTransient(
                        f"result from {target.host} unavailable after {attempt + 1} attempts: {exc}"
                    ) from exc
                delay = self._delay(attempt, exc.retry_after_s)
                logger.info("result from %s: %s; retrying in %.2fs", target.host, exc, delay)
                await self._sleep(delay)
                attempt += 1
                continue
            logger.info(
                "stored result %s from %s (%d bytes, %s %dx%d) in %.2fs",
                info.key,
                target.host,
                info.bytes,
                info.format,
                info.width,
                info.height,
                self._clock() - started,
            )
            return info

    async def store_bytes(
        self, data: bytes, key_stem: str, *, size: tuple[int, int] | None = None
    ) -> ResultInfo:
        """Check and store an inline result (e.g. a decoded base64 answer)."""
        validate_key(f"{key_stem}.png")
        if len(data) > self._max_bytes:
            raise ResultInvalid(f"result of {len(data)} bytes exceeds {self._max_bytes} bytes")
        fmt = _sniff_or_refuse(data[:SNIFF_BYTES])
        spool = await self._new_spool(key_stem)
        try:
            await spool.write([data])
            return await self._finish(spool, fmt, key_stem, size)
        except BaseException:
            spool.discard()
            raise

    def _delay(self, attempt: int, retry_after_s: float | None) -> float:
        delay = self._backoff_s * (2.0**attempt)
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return min(delay, self._max_backoff_s)

    async def _attempt(
        self, url: httpx.URL, key_stem: str, size: tuple[int, int] | None
    ) -> ResultInfo:
        """One attempt: follow up to ``max_redirects`` redirects, then download."""
        current = url
        for _hop in range(self._max_redirects + 1):
            try:
                async with self._client.stream(
                    "GET", current, headers={"Accept-Encoding": "identity"}
                ) as response:
                    if response.status_code in _REDIRECTS:
                        current = _redirect_target(current, response)
                        continue
                    _check_status(current, response)
                    return await self._download(response, key_stem, size)
            except httpx.TimeoutException as exc:
                raise _Transient(f"timed out talking to {current.host}") from exc
            except (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError) as exc:
                raise _Transient(
                    f"connection to {current.host} failed ({type(exc).__name__})"
                ) from exc
            except httpx.UnsupportedProtocol as exc:
                raise ForbiddenURL(f"unsupported scheme for {current.host}") from exc
            except httpx.HTTPError as exc:  # InvalidURL, DecodingError, LocalProtocolError ...
                raise ResultInvalid(
                    f"cannot download from {current.host} ({type(exc).__name__})"
                ) from exc
        raise ResultInvalid(f"more than {self._max_redirects} redirects from {url.host}")

    async def _download(
        self, response: httpx.Response, key_stem: str, size: tuple[int, int] | None
    ) -> ResultInfo:
        host = response.request.url.host
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise ResultInvalid(f"result from {host} has unexpected Content-Encoding {encoding!r}")
        declared = _content_length(response)
        if declared is not None and declared > self._max_bytes:
            raise ResultInvalid(
                f"result from {host} is {declared} bytes, over the cap of {self._max_bytes}"
            )
        spool = await self._new_spool(key_stem)
        try:
            fmt = await self._stream_into(response, spool, host)
            return await self._finish(spool, fmt, key_stem, size)
        except BaseException:
            spool.discard()
            raise

    async def _stream_into(self, response: httpx.Response, spool: ResultSpool, host: str) -> str:
        """Copy the body into ``spool`` under the byte cap; return the sniffed format."""
        received = 0
        head = b""
        fmt: str | None = None
        block: list[bytes] = []
        block_bytes = 0
        async for chunk in response.aiter_raw():
            received += len(chunk)
            if received > self._max_bytes:
                raise ResultInvalid(
                    f"result from {host} exceeds the cap of {self._max_bytes} bytes"
                )
            if fmt is None:
                head += chunk[: SNIFF_BYTES - len(head)]
                if len(head) >= SNIFF_BYTES:
                    fmt = _sniff_or_refuse(head)
            block.append(chunk)
            block_bytes += len(chunk)
            if block_bytes >= WRITE_BLOCK:
                await spool.write(block)
                block, block_bytes = [], 0
        if block:
            await spool.write(block)
        if received == 0:
            raise ResultInvalid(f"result from {host} is empty")
        return fmt if fmt is not None else _sniff_or_refuse(head)

    async def _finish(
        self, spool: ResultSpool, fmt: str, key_stem: str, size: tuple[int, int] | None
    ) -> ResultInfo:
        await spool.flushed()
        walked = spool.png_walked()
        # The image is checked (its header read back) while it goes to the disk.
        facts, sha256 = await asyncio.gather(
            in_thread(inspect_image, spool.path, self._max_pixels, png_walked=walked),
            spool.finish(),
        )
        if facts.format != fmt:
            raise ResultInvalid(f"result magic bytes say {fmt} but it reads as {facts.format}")
        if size is not None and (facts.width, facts.height) != size:
            raise ResultInvalid(
                f"result is {facts.width}x{facts.height} pixels but the input is"
                f" {size[0]}x{size[1]}: a replace result must have the input's size"
            )
        key = f"{key_stem}.{extension_for(facts.format)}"
        try:
            await self._storage.put_file(spool.path, key)
        except OSError as exc:
            raise FetchTransient(f"cannot store result {key}: {exc.strerror}") from exc
        return ResultInfo(
            key=key,
            content_type=facts.content_type,
            bytes=spool.size,
            sha256=sha256,
            width=facts.width,
            height=facts.height,
            format=facts.format,
        )

    async def _new_spool(self, key_stem: str) -> ResultSpool:
        return await ResultSpool.create(self._tmp_dir, f"{key_stem}.")


def _http_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ForbiddenURL("result URL is not a valid URL") from exc
    _check_scheme(parsed)
    return parsed


def _check_scheme(url: httpx.URL) -> None:
    if url.scheme not in _ALLOWED_SCHEMES:
        raise ForbiddenURL(f"result URL scheme {url.scheme!r} is not allowed, only http(s)")
    if not url.host:
        raise ForbiddenURL("result URL has no host")


def _redirect_target(current: httpx.URL, response: httpx.Response) -> httpx.URL:
    location = response.headers.get("location")
    if not location:
        raise ResultInvalid(f"redirect {response.status_code} from {current.host} has no Location")
    try:
        target = current.join(location)
    except httpx.InvalidURL as exc:
        raise ForbiddenURL(f"redirect from {current.host} to an invalid URL") from exc
    _check_scheme(target)
    logger.debug("result redirect %d: %s -> %s", response.status_code, current.host, target.host)
    return target


def _check_status(url: httpx.URL, response: httpx.Response) -> None:
    status = response.status_code
    if status == 200:
        return
    if status in _EXPIRED:
        raise ResultExpired(f"result URL on {url.host} answered {status}")
    if status == 429 or status >= 500:
        raise _Transient(f"{url.host} answered {status}", _retry_after(response))
    raise ResultInvalid(f"result URL on {url.host} answered {status}")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    if value.isdigit():
        return float(value)
    return None


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length", "").strip()
    return int(value) if value.isdigit() else None


def _sniff_or_refuse(head: bytes) -> str:
    fmt = sniff_format(head)
    if fmt is None:
        raise ResultInvalid("result is not an image (unrecognised magic bytes)")
    return fmt
