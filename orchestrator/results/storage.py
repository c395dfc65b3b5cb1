"""Where checked result images live.

A stored result is addressed by a key such as ``<job_id>.png``: one flat
namespace, no directories, so a key can never escape the storage root.
:class:`LocalResultStorage` moves a finished temporary file into place with
``os.replace``, which is atomic on one filesystem: a reader sees either no
file or the whole file, never a partial one. Temporary files therefore belong
in ``root/.tmp/`` (:attr:`LocalResultStorage.tmp_dir`), next to their final
place; a file from elsewhere is copied there first.

Every backend (this one, and :class:`orchestrator.results.s3.S3ResultStorage`)
serves stored bytes through :meth:`ResultStorage.read_stream`: it opens the
result (FileNotFoundError when there is none, before any byte is sent) and
returns a :class:`ResultStream` that yields bounded chunks, so the result
endpoint needs no local path. :meth:`LocalResultStorage.path_for` stays for
callers that know they hold a local store.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol, Self

from orchestrator.security.private_files import make_private_dir

__all__ = [
    "READ_CHUNK",
    "LocalResultStorage",
    "ResultStorage",
    "ResultStream",
    "validate_key",
]

logger = logging.getLogger(__name__)

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}\Z")

READ_CHUNK = 256 * 1024
"""Default size of the chunks :meth:`ResultStorage.read_stream` yields (at most)."""


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe flat name (``abc-123.png``); ValueError otherwise."""
    if not _KEY.match(key) or ".." in key:
        raise ValueError(f"invalid result key {key!r}")
    return key


class ResultStream(AsyncIterator[bytes]):
    """The bytes of one opened result, as an async iterator of non-empty chunks.

    The source is released when the stream is exhausted, when reading fails,
    and by :meth:`aclose` (idempotent; also ``async with``). Whoever opens a
    stream and may stop early must close it: an unclosed stream holds a file
    or a connection until it is garbage-collected.
    """

    def __init__(
        self,
        read: Callable[[], Awaitable[bytes]],
        close: Callable[[], Awaitable[None]],
        *,
        size: int | None = None,
    ) -> None:
        self._read = read
        self._close = close
        self._closed = False
        self.size = size
        """The length in bytes when the backend knows it (for Content-Length)."""

    @property
    def closed(self) -> bool:
        return self._closed

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        try:
            chunk = await self._read()
        except BaseException:
            await self.aclose()
            raise
        if not chunk:
            await self.aclose()
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class ResultStorage(Protocol):
    """What the fetcher and the result endpoint need from a result store.

    Keys are flat names checked by :func:`validate_key`; every method raises
    ValueError for any other key. Storage failures are OSError (so the fetcher
    treats them as transient); a missing result is FileNotFoundError.
    """

    async def put_file(self, tmp_path: Path, key: str) -> None:
        """Store the finished file at ``tmp_path`` under ``key`` (replacing).

        On success the temporary file is gone (moved or uploaded, then deleted);
        on failure it may remain, and belongs to the caller.
        """
        ...

    async def exists(self, key: str) -> bool: ...

    async def open(self, key: str) -> BinaryIO:
        """The stored bytes for reading; FileNotFoundError when there are none."""
        ...

    async def read_stream(self, key: str, *, chunk_size: int = READ_CHUNK) -> ResultStream:
        """Open ``key`` for streaming; FileNotFoundError (raised here) when there is none."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; no error when it is already gone."""
        ...

    async def aclose(self) -> None:
        """Release clients and connections; the store is not used afterwards."""
        ...


class LocalResultStorage:
    """Results as files in one directory, moved into place atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp_dir = root / ".tmp"
        make_private_dir(self.tmp_dir)

    def path_for(self, key: str) -> Path:
        return self.root / validate_key(key)

    async def put_file(self, tmp_path: Path, key: str) -> None:
        target = self.path_for(key)
        await asyncio.to_thread(self._put_file, tmp_path, target)
        logger.debug("stored result %s", key)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path_for(key).is_file)

    async def open(self, key: str) -> BinaryIO:
        path = self.path_for(key)
        return await asyncio.to_thread(_open_binary, path)

    async def read_stream(self, key: str, *, chunk_size: int = READ_CHUNK) -> ResultStream:
        """The file in chunks of at most ``chunk_size`` bytes, each read in a worker thread."""
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        path = self.path_for(key)
        fh = await asyncio.to_thread(_open_binary, path)
        try:
            size = await asyncio.to_thread(lambda: os.fstat(fh.fileno()).st_size)
        except BaseException:
            fh.close()
            raise

        async def read() -> bytes:
            return await asyncio.to_thread(fh.read, chunk_size)

        async def close() -> None:
            await asyncio.to_thread(fh.close)

        return ResultStream(read, close, size=size)

    async def delete(self, key: str) -> None:
        path = self.path_for(key)
        await asyncio.to_thread(path.unlink, True)

    async def aclose(self) -> None:
        """Nothing to release: files are opened per call."""

    def _put_file(self, tmp_path: Path, target: Path) -> None:
        try:
            os.replace(tmp_path, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            self._copy_into_place(tmp_path, target)
        _fsync_dir(self.root)

    def _copy_into_place(self, source: Path, target: Path) -> None:
        """``source`` is on another filesystem: copy next to ``target``, then rename."""
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix=f"{target.name}.", suffix=".part")
        staged = Path(name)
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            os.replace(staged, target)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        source.unlink(missing_ok=True)


def _open_binary(path: Path) -> BinaryIO:
    return path.open("rb")


def _fsync_dir(path: Path) -> None:
    """Make the rename durable; best effort (not every platform can open a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
