"""A downloaded result on its way to the disk: hashed, walked (PNG) and written behind.

:class:`ResultSpool` is a temporary file next to the result store. Blocks of
about ``WRITE_BLOCK`` bytes go to a thread of the spool's own, at most
``WRITE_BEHIND`` of them ahead, where each is hashed, written and (for a PNG)
walked chunk by chunk with every CRC checked, while the next ones are received.
The kernel is asked to start writing to the disk as the file grows, so the
final fsync is short. A local I/O failure is :class:`FetchTransient`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, ParamSpec, TypeVar

from orchestrator.fetch.imagecheck import PNG_MAGIC, PngWalker
from schemas.errors import FetchTransient

# Received chunks are handed to the spool's thread in blocks of about this size, at
# most WRITE_BEHIND blocks ahead of it (memory held: a few MiB whatever the size).
WRITE_BLOCK = 1 << 20
WRITE_BEHIND = 4
WRITEBACK_EVERY = 8 << 20

_P = ParamSpec("_P")
_T = TypeVar("_T")


class ResultSpool:
    """A temporary file that hashes what is written to it, written behind the download.

    Blocks go, in order, to a thread of the spool's own, and at most
    ``WRITE_BEHIND`` of them wait there: the next chunks are received while the
    earlier ones are hashed and written, and memory stays bounded.
    """

    def __init__(self, directory: Path, prefix: str) -> None:
        fd, name = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".part")
        self.path = Path(name)
        self.size = 0
        self._png: PngWalker | None = None
        self._written_back = 0
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._sha = hashlib.sha256()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self._queued: collections.deque[asyncio.Future[None]] = collections.deque()

    @classmethod
    async def create(cls, directory: Path, prefix: str) -> ResultSpool:
        return await in_thread(cls, directory, prefix)

    async def write(self, chunks: Sequence[bytes | bytearray | memoryview]) -> None:
        """Queue ``chunks``; wait only while ``WRITE_BEHIND`` blocks are queued already."""
        while len(self._queued) >= WRITE_BEHIND:
            await local_io(self._queued.popleft())
        loop = asyncio.get_running_loop()
        self._queued.append(loop.run_in_executor(self._thread, self._write, chunks))

    async def flushed(self) -> None:
        """Wait for the queued blocks; then the whole file can be read back."""
        while self._queued:
            await local_io(self._queued.popleft())
        loop = asyncio.get_running_loop()
        await local_io(loop.run_in_executor(self._thread, self._file.flush))

    def png_walked(self) -> bool:
        """Once flushed: True if it is a PNG whose chunks and CRCs were all checked on
        the way in (ResultInvalid if they were bad), False if it is not a PNG."""
        if self._png is None:
            return False
        self._png.finish()
        return True

    async def finish(self) -> str:
        """Once flushed: send it to the disk and close it; the sha256 of it all."""
        await local_io(asyncio.get_running_loop().run_in_executor(self._thread, self._close))
        self._thread.shutdown(wait=False)
        return self._sha.hexdigest()

    def discard(self) -> None:
        """Close and delete; safe to call at any point, more than once. Waits for the
        block being written at the moment, if any (the others are dropped)."""
        for queued in self._queued:
            if queued.done() and not queued.cancelled():
                queued.exception()  # already failed: seen here, not logged as unretrieved
            queued.cancel()
        self._queued.clear()
        self._thread.shutdown(wait=True, cancel_futures=True)
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)

    # in the spool's thread ---------------------------------------------------------------

    def _write(self, chunks: Sequence[bytes | bytearray | memoryview]) -> None:
        # One block, not many chunks: the hash and the write each let go of the
        # interpreter lock once per block, and the event loop thread wants it back.
        block = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if self.size == 0 and block[: len(PNG_MAGIC)] == PNG_MAGIC:
            self._png = PngWalker()
        if self._png is not None:
            self._png.feed(block)  # a corrupt PNG stops the download here
        self._sha.update(block)
        self._file.write(block)
        self.size += len(block)
        if self.size - self._written_back >= WRITEBACK_EVERY:
            self._start_writeback()

    def _start_writeback(self) -> None:
        """Have the kernel start writing what we wrote so far to the disk, without
        waiting for it (POSIX_FADV_DONTNEED starts the write-back of dirty pages on
        Linux): the final fsync then has little left to wait for."""
        self._file.flush()
        if hasattr(os, "posix_fadvise"):
            done, self._written_back = self._written_back, self.size
            os.posix_fadvise(self._file.fileno(), done, self.size - done, os.POSIX_FADV_DONTNEED)

    def _close(self) -> None:
        os.fsync(self._file.fileno())
        self._file.close()


async def in_thread(fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run blocking file work in a thread; a local I/O failure is retryable later."""
    return await local_io(asyncio.to_thread(fn, *args, **kwargs))


async def local_io(work: Awaitable[_T]) -> _T:
    """Await local file work; an OSError becomes FetchTransient (retryable later)."""
    try:
        return await work
    except OSError as exc:
        raise FetchTransient(f"cannot write the result locally: {exc.strerror}") from exc
