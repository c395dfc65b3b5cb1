"""Result storage in an S3-compatible bucket (AWS S3, SeaweedFS, MinIO, R2, ...).

Objects live at ``<prefix>/<key>`` in one bucket, keys checked by
:func:`orchestrator.results.storage.validate_key` exactly as in the local backend.
The client is `aiobotocore <https://github.com/aio-libs/aiobotocore>`_:
native asyncio over aiohttp, so no request holds a worker thread; only the
reads of the local temporary file run in threads.

Memory stays bounded whatever the size of a result:

* :meth:`S3ResultStorage.put_file` uploads a file of at most
  ``multipart_threshold`` bytes with one PUT, and anything larger as a
  multipart upload of ``part_size`` parts, one after the other; a failed
  multipart upload is aborted. Request bodies are slices of the temporary
  file (:mod:`orchestrator.results.file_slice`) that aiohttp reads in 64 KiB chunks
  in its executor, so no part is ever held in memory. The temporary file is
  deleted after a successful upload and left to the caller otherwise.
* :meth:`S3ResultStorage.read_stream` yields the object in chunks straight
  from the HTTP response.

Failures to reach or use the bucket are raised as :class:`StorageUnavailable`,
an OSError, which the fetcher already treats as transient; a missing object
is FileNotFoundError.

The client is created on first use, inside the running event loop, and
closed by :meth:`S3ResultStorage.aclose` (or ``async with``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import mimetypes
import os
import tempfile
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Self, cast

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from orchestrator.results.file_slice import file_body, part_ranges
from orchestrator.results.storage import READ_CHUNK, ResultStream, validate_key
from orchestrator.security.private_files import make_private_dir

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.literals import BucketLocationConstraintType
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

__all__ = ["MIN_PART_SIZE", "S3ResultStorage", "StorageUnavailable"]

logger = logging.getLogger(__name__)

MIN_PART_SIZE = 5 * 1024 * 1024
"""S3's smallest part (all but the last) of a multipart upload."""
_MAX_PARTS = 10_000
_MAX_PRESIGN_S = 7 * 24 * 3600
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_SPOOL_IN_MEMORY = 1 << 20


class StorageUnavailable(OSError):
    """The bucket could not be reached or refused a request."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EIO, message)


class S3ResultStorage:
    """Results as objects under ``prefix/`` in one S3 bucket."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        addressing_style: str | None = None,
        part_size: int = 8 * 1024 * 1024,
        multipart_threshold: int | None = None,
        spool_dir: Path | None = None,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 60.0,
        max_attempts: int = 3,
    ) -> None:
        """Credentials left as None come from botocore's usual chain.

        ``addressing_style`` defaults to ``path`` with an ``endpoint_url``
        (what most S3-compatible servers want) and to ``auto`` without.
        """
        if not bucket:
            raise ValueError("bucket must not be empty")
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        threshold = part_size if multipart_threshold is None else multipart_threshold
        if threshold <= 0:
            raise ValueError("multipart_threshold must be positive")
        if (access_key_id is None) != (secret_access_key is None):
            raise ValueError("give both access_key_id and secret_access_key, or neither")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.region = region
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._session_token = session_token
        self._part_size = part_size
        self._threshold = threshold
        self._spool_dir = spool_dir
        self._config = AioConfig(
            region_name=region,
            signature_version="s3v4",
            s3={"addressing_style": addressing_style or ("path" if endpoint_url else "auto")},
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            # Checksums only where S3 requires them: many S3-compatible servers
            # reject the newer default trailing checksums.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._stack: AsyncExitStack | None = None
        self._s3: S3Client | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"S3ResultStorage(s3://{self.bucket}/{self.prefix}{where})"

    def object_key(self, key: str) -> str:
        """The object name for a result key (validated)."""
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client and its connection pool; the store is not used afterwards."""
        async with self._lock:
            self._closed = True
            stack, self._stack, self._s3 = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def _client(self) -> S3Client:
        if self._s3 is not None:
            return self._s3
        async with self._lock:
            if self._closed:
                raise RuntimeError(f"{self!r} is closed")
            if self._s3 is None:
                stack = AsyncExitStack()
                self._s3 = await stack.enter_async_context(
                    get_session().create_client(
                        "s3",
                        region_name=self.region,
                        endpoint_url=self.endpoint_url,
                        aws_access_key_id=self._access_key_id,
                        aws_secret_access_key=self._secret_access_key,
                        aws_session_token=self._session_token,
                        config=self._config,
                    )
                )
                self._stack = stack
            return self._s3

    # -- the ResultStorage protocol -----------------------------------------

    async def put_file(self, tmp_path: Path, key: str) -> None:
        """Upload ``tmp_path`` as ``key`` (replacing), then delete ``tmp_path``."""
        name = self.object_key(key)
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        fh = await asyncio.to_thread(_open_binary, tmp_path)
        try:
            size = await asyncio.to_thread(lambda: os.fstat(fh.fileno()).st_size)
            with _translate(f"upload of {key}"):
                if size <= self._threshold:
                    await self._put_single(fh, name, size, content_type)
                else:
                    await self._put_multipart(fh, name, size, content_type)
        finally:
            await asyncio.to_thread(fh.close)
        await asyncio.to_thread(tmp_path.unlink, True)
        logger.debug("stored result %s in s3://%s/%s (%d bytes)", key, self.bucket, name, size)

    async def exists(self, key: str) -> bool:
        name = self.object_key(key)
        s3 = await self._client()
        try:
            with _translate(f"lookup of {key}"):
                await s3.head_object(Bucket=self.bucket, Key=name)
        except FileNotFoundError:
            return False
        return True

    async def read_stream(self, key: str, *, chunk_size: int = READ_CHUNK) -> ResultStream:
        """The object in chunks of at most ``chunk_size`` bytes; FileNotFoundError if absent."""
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        name = self.object_key(key)
        s3 = await self._client()
        with _translate(f"download of {key}"):
            response = await s3.get_object(Bucket=self.bucket, Key=name)
        body = response["Body"]

        async def read() -> bytes:
            with _translate(f"download of {key}"):
                return await body.read(chunk_size)

        async def close() -> None:
            body.close()

        return ResultStream(read, close, size=response.get("ContentLength"))

    open_stream = read_stream
    """An alias of :meth:`read_stream`."""

    async def open(self, key: str) -> BinaryIO:
        """The object copied into a temporary file (kept in memory up to 1 MiB)."""
        stream = await self.read_stream(key)
        if self._spool_dir is not None:
            await asyncio.to_thread(make_private_dir, self._spool_dir)
        spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - handed to the caller
            max_size=_SPOOL_IN_MEMORY, dir=None if self._spool_dir is None else str(self._spool_dir)
        )
        try:
            async with stream:
                async for chunk in stream:
                    await asyncio.to_thread(spool.write, chunk)
            spool.seek(0)
        except BaseException:
            spool.close()
            raise
        return spool  # type: ignore[return-value]  # SpooledTemporaryFile is a binary IO

    async def delete(self, key: str) -> None:
        name = self.object_key(key)
        s3 = await self._client()
        with contextlib.suppress(FileNotFoundError), _translate(f"delete of {key}"):
            await s3.delete_object(Bucket=self.bucket, Key=name)

    # -- beyond the protocol -------------------------------------------------

    async def presigned_url(self, key: str, expires_s: int = 900) -> str:
        """A URL that GETs ``key`` without credentials for ``expires_s`` seconds.

        The URL is signed locally (no request is made), so it is handed out
        whether or not the object exists.
        """
        if not 1 <= expires_s <= _MAX_PRESIGN_S:
            raise ValueError(f"expires_s must be between 1 and {_MAX_PRESIGN_S}")
        name = self.object_key(key)
        s3 = await self._client()
        with _translate(f"signing of {key}"):
            return await s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": name},
                ExpiresIn=expires_s,
            )

    async def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist (for tests and first runs)."""
        s3 = await self._client()
        try:
            with _translate(f"lookup of bucket {self.bucket}"):
                await s3.head_bucket(Bucket=self.bucket)
        except FileNotFoundError:
            with _translate(f"creation of bucket {self.bucket}"):
                if self.region == "us-east-1":
                    await s3.create_bucket(Bucket=self.bucket)
                else:
                    await s3.create_bucket(
                        Bucket=self.bucket,
                        CreateBucketConfiguration={
                            "LocationConstraint": cast("BucketLocationConstraintType", self.region)
                        },
                    )

    # -- uploads -------------------------------------------------------------

    async def _put_single(self, fh: BinaryIO, name: str, size: int, content_type: str) -> None:
        s3 = await self._client()
        await s3.put_object(
            Bucket=self.bucket,
            Key=name,
            Body=file_body(fh, 0, size),
            ContentLength=size,
            ContentType=content_type,
        )

    async def _put_multipart(self, fh: BinaryIO, name: str, size: int, content_type: str) -> None:
        part_size = max(self._part_size, math.ceil(size / _MAX_PARTS))
        s3 = await self._client()
        created = await s3.create_multipart_upload(
            Bucket=self.bucket, Key=name, ContentType=content_type
        )
        upload_id = created["UploadId"]
        try:
            parts: list[CompletedPartTypeDef] = []
            for number, offset, length in part_ranges(size, part_size):
                uploaded = await s3.upload_part(
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=file_body(fh, offset, length),
                    ContentLength=length,
                )
                parts.append({"PartNumber": number, "ETag": uploaded["ETag"]})
            await s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=name,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            await asyncio.shield(self._abort(name, upload_id))
            raise

    async def _abort(self, name: str, upload_id: str) -> None:
        """Best effort: a left-over upload only costs storage until a lifecycle rule."""
        try:
            s3 = await self._client()
            await s3.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
        except Exception as exc:  # already failing: keep the first error
            logger.warning("could not abort multipart upload of %s: %s", name, exc)


def _open_binary(path: Path) -> BinaryIO:
    return path.open("rb")


@contextlib.contextmanager
def _translate(what: str) -> Iterator[None]:
    """botocore and aiohttp errors as FileNotFoundError or StorageUnavailable."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _MISSING or (status == 404 and code != "NoSuchBucket"):
            raise FileNotFoundError(errno.ENOENT, f"{what}: not found") from exc
        message = error.get("Message") or code or f"HTTP {status}"
        raise StorageUnavailable(f"{what} failed: {code or status}: {message}") from exc
    except (BotoCoreError, aiohttp.ClientError, TimeoutError) as exc:
        raise StorageUnavailable(f"{what} failed: {type(exc).__name__}: {exc}") from exc
