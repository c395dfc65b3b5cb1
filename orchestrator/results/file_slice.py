"""A slice of an open file as a seekable, read-only stream: a request body read from disk.

An upload (one PUT, or each part of a multipart upload) sends a
:class:`FileSlice` of the temporary file rather than its bytes, so memory
stays at kilobytes whatever the size of the result.
"""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, BinaryIO, cast

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


def part_ranges(size: int, part_size: int) -> Iterator[tuple[int, int, int]]:
    """(part number from 1, offset, length) covering ``size`` bytes."""
    for index, offset in enumerate(range(0, size, part_size)):
        yield index + 1, offset, min(part_size, size - offset)


class FileSlice(io.RawIOBase):
    """``length`` bytes of an open file from ``start``, as a seekable read-only stream.

    A request body that aiohttp reads in small chunks in its executor, so an
    upload holds kilobytes, not the part, in memory; botocore can seek back
    to retry. Reads use ``os.pread``, so slices of one file never disturb each
    other. Closing a slice leaves the file open.
    """

    def __init__(self, fd: int, start: int, length: int) -> None:
        super().__init__()
        self._fd = fd
        self._start = start
        self._length = length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def __len__(self) -> int:
        return self._length

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        left = max(0, self._length - self._pos)
        want = left if size is None or size < 0 else min(size, left)
        if want == 0:
            return b""
        data = os.pread(self._fd, want, self._start + self._pos)
        if not data:
            raise OSError(errno.EIO, "temporary file shrank during the upload")
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)


def file_body(fh: BinaryIO, start: int, length: int) -> IO[bytes]:
    return cast("IO[bytes]", FileSlice(fh.fileno(), start, length))
